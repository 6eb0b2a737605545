"""The calcinosis work-up as a FHIR R4 `PlanDefinition` (eca-rule), read from the rule library itself.

One action per type of calcinosis cutis (its applicability condition is the library's grade define
at moderate or above), then one action per panel group (its condition is the library's define that
decides whether the group is considered; the baseline group always is), each holding one action per
test of the group as the library's "Panel" define lists it (code, plain name, citations). The
citations are the library's own quoted sentences, rendered from the bibliography.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable

from ..bibliography import Bibliography, related_artifact
from ..cql_like import Library
from ..fhir_outputs.vocabulary import calcinosis_type_coding, panel_group_label, panel_group_order
from .identity import artifact_settings, canonical
from .library_resource import library_url, publication_artifact

PLAN_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
CQL_IDENTIFIER = "text/cql-identifier"
CQL_EXPRESSION = "text/cql"


class _NoPatientData:
    """A data provider with no records: the "Panel" define's tests, codes and citations do not depend
    on a patient (its availability columns are then all null)."""

    def patient(self) -> None:
        return None

    def retrieve(self, type_name: str, codes: Any) -> list[Any]:
        return []


def plan_definition_id() -> str:
    return artifact_settings()["plan_definition"]["id"]


def plan_definition_url() -> str:
    return canonical("PlanDefinition", plan_definition_id())


def panel_tests(library: Library) -> list[Any]:
    """The rows of the library's "Panel" define (code, system, display, name, group, citation...)."""
    panel = artifact_settings()["panel_define"]
    return list(library.evaluate_define(panel, _NoPatientData(), now=datetime.now(timezone.utc)).value or ())


def type_condition(grade_define: str) -> str:
    """`"Metastatic Risk" in { 'moderate', 'high' }`: the type action applies at these grades."""
    grades = ", ".join(f"'{grade}'" for grade in artifact_settings()["type_condition_grades"])
    return f'"{grade_define}" in {{ {grades} }}'


def build_plan_definition(library: Library, *, bibliography: Bibliography,
                          publication_keys: Iterable[str]) -> dict[str, Any]:
    """The unvalidated PlanDefinition for the compiled library."""
    settings = artifact_settings()
    plan = settings["plan_definition"]
    keys = list(publication_keys)
    resource: dict[str, Any] = {
        "resourceType": "PlanDefinition",
        "id": plan["id"],
        "url": plan_definition_url(),
        "version": library.version or "0.0.0",
        "name": plan["name"],
        "title": plan["title"],
        "type": {"coding": [{"system": PLAN_TYPE_SYSTEM, "code": "eca-rule", "display": "ECA Rule"}]},
        "status": "active",
        "experimental": False,
        "publisher": settings["publisher"],
        "description": plan["description"],
        "relatedArtifact": [{"type": "depends-on", "resource": _versioned(library_url(library), library.version)}]
        + [artifact for key in keys if (artifact := publication_artifact(bibliography, key))],
        "library": [_versioned(library_url(library), library.version)],
        "action": [*_type_actions(), *_group_actions(library, bibliography)],
    }
    return resource


def _versioned(url: str, version: str | None) -> str:
    return f"{url}|{version}" if version else url


def _type_actions() -> list[dict[str, Any]]:
    actions = []
    for entry in artifact_settings()["types"]:
        coding = calcinosis_type_coding(entry["type"])
        actions.append({
            "id": f"type-{entry['type']}",
            "title": coding["display"],
            "description": f"Grades {coding['display'].lower()} (define \"{entry['grade_define']}\": negligible, "
                           "low, moderate or high); the grade and its rationale are a RiskAssessment prediction.",
            "code": [{"coding": [coding]}],
            "condition": [{"kind": "applicability", "expression": {
                "description": f"{coding['display']} graded moderate or high",
                "language": CQL_EXPRESSION, "expression": type_condition(entry["grade_define"])}}],
        })
    return actions


def _group_actions(library: Library, bibliography: Bibliography) -> list[dict[str, Any]]:
    conditions = artifact_settings()["panel_groups"]
    tests = panel_tests(library)
    actions = []
    for group in panel_group_order():
        members = [test for test in tests if test["group"] == group]
        if not members:
            continue
        action: dict[str, Any] = {
            "id": f"group-{group}",
            "title": panel_group_label(group),
            "description": _group_description(conditions.get(group)),
            "groupingBehavior": "logical-group",
            "selectionBehavior": "any",
        }
        if conditions.get(group):
            action["condition"] = [{"kind": "applicability", "expression": {
                "language": CQL_IDENTIFIER, "expression": conditions[group]}}]
        action["action"] = [_test_action(test, bibliography) for test in members]
        actions.append(action)
    return actions


def _group_description(define: str | None) -> str:
    considered = f'when define "{define}" is true' if define else "always"
    return (f"Considered {considered}. Each test is proposed when define \"Recommended Tests\" holds it: no current "
            "valid result, not already ordered, not left out on purpose, not among data read only in part.")


def _test_action(test: Any, bibliography: Bibliography) -> dict[str, Any]:
    action: dict[str, Any] = {"title": test["name"]}
    if test["code"] and test["system"]:
        action["id"] = f"test-{test['code']}"
        action["code"] = [{"coding": [{"system": test["system"], "code": test["code"], "display": test["display"]}],
                           "text": test["name"]}]
    else:
        action["id"] = "test-" + "-".join(test["name"].lower().split())
        action["code"] = [{"text": test["display"]}]
        action["description"] = "Proposed by name only: no verified code."
    citations = [bibliography.citation(c["source"], c["section"], c["quote"]) for c in test["citation"] or ()]
    if citations:
        action["documentation"] = [related_artifact(citation) for citation in citations]
    action["type"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/action-type", "code": "create"}]}
    return {key: value for key, value in action.items() if value is not None}


__all__ = ["build_plan_definition", "plan_definition_id", "plan_definition_url", "panel_tests", "type_condition"]
