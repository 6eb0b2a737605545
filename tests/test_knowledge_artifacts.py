"""The rule library published as FHIR R4 Library, PlanDefinition and ValueSet resources: valid R4,
generated from the files the engine runs, and round-tripping to the same compiled library."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from conftest import FIXTURE_NOW, assess_fixture
from service.config import load_config
from service.cql_like import compile_library, load_model_info
from service.knowledge_artifacts import KnowledgeArtifacts
from service.knowledge_artifacts.library_resource import cql_text
from service.knowledge_artifacts.plan_definition import panel_tests, type_condition
from service.pipeline.assess import get_assessor
from service.pipeline.normalize import build_facts
from service.pipeline.ingest import read_bundle

SETTINGS = load_config(None)
CANONICAL = "https://calcinosis-cds.org/fhir"


def validate_r4(resource: dict) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


@pytest.fixture(scope="module")
def assessor():
    return get_assessor()


@pytest.fixture(scope="module")
def artifacts(assessor):
    return KnowledgeArtifacts.from_settings(assessor.library, assessor.bibliography, SETTINGS)


def test_every_published_resource_validates_as_r4(artifacts):
    resources = [artifacts.library, artifacts.plan_definition]
    resources += [artifacts.read("ValueSet", vs_id) for vs_id in artifacts.value_sets]
    resources += [artifacts.expand(published) for published in artifacts.value_sets.values()]
    for resource in resources:
        validate_r4(resource)
    assert len(resources) == 2 + 2 * len(list(Path(SETTINGS["VALUESET_DIR"]).glob("*.json")))


def test_the_library_carries_the_cql_text_the_service_compiled(artifacts, assessor):
    library = artifacts.library
    assert library["url"] == f"{CANONICAL}/Library/CalcinosisCutis"
    assert library["version"] == assessor.library.version == "1.0.0"
    assert library["type"]["coding"][0]["code"] == "logic-library"
    assert cql_text(library) == Path(SETTINGS["RULE_LIBRARY"]).read_text(encoding="utf-8")
    assert [p["name"] for p in library["parameter"]] == ["Lookback"]


def test_the_library_cql_text_compiles_to_the_same_engine_library_the_service_runs(artifacts, assessor):
    service_library = assessor.library
    published = compile_library(cql_text(artifacts.library), filename="published.cql",
                                model=load_model_info(Path(SETTINGS["MODEL_INFO"])),
                                valueset_dir=Path(SETTINGS["VALUESET_DIR"]))
    assert (published.name, published.version) == (service_library.name, service_library.version)
    assert published.define_names == service_library.define_names
    assert {name: str(t) for name, t in published.define_types.items()} == {
        name: str(t) for name, t in service_library.define_types.items()}
    # and it answers the same on a patient's record
    patient = read_bundle(orjson.loads(assess_fixture("04").read_bytes())).patients[0]
    facts = build_facts(patient, now=FIXTURE_NOW, terminology=assessor.terminology, gaps=())
    ours = published.evaluate(facts, parameters=assessor.parameters, now=FIXTURE_NOW).values_only()
    theirs = service_library.evaluate(facts, parameters=assessor.parameters, now=FIXTURE_NOW).values_only()
    assert ours["Recommended Tests"] == theirs["Recommended Tests"]
    assert ours["Metastatic Risk"] == theirs["Metastatic Risk"] == "high"
    assert repr(ours) == repr(theirs)


def test_data_requirements_are_the_retrieves_of_the_library(artifacts):
    requirements = artifacts.library["dataRequirement"]
    filtered = {(r["type"], r["codeFilter"][0]["valueSet"]) for r in requirements if "codeFilter" in r}
    whole = {r["type"] for r in requirements if "codeFilter" not in r}
    assert ("Observation", f"{CANONICAL}/ValueSet/calcium-total") in filtered
    assert ("Condition", f"{CANONICAL}/ValueSet/organ-transplant") in filtered
    assert {"Patient", "Condition", "Procedure", "ServiceRequest", "MedicationRequest", "MedicationAdministration",
            "MedicationStatement"} <= whole
    # the service's own DataGap records are not FHIR data a client sends
    assert all(r["type"] != "DataGap" for r in requirements)
    cql = cql_text(artifacts.library)
    for _, url in filtered:
        assert f"'{url}'" in cql


def test_the_library_depends_on_every_value_set_and_cites_the_bibliography(artifacts):
    related = artifacts.library["relatedArtifact"]
    depends = {a["resource"] for a in related if a["type"] == "depends-on"}
    assert depends == {published.url for published in artifacts.value_sets.values()}
    keys = [e["key"] for e in json.loads(Path(SETTINGS["BIBLIOGRAPHY"]).read_text())["entries"]]
    assert [a["label"] for a in related if a["type"] == "citation"] == keys


def test_the_plan_definition_has_an_action_per_type_and_per_panel_group(artifacts, assessor):
    plan = artifacts.plan_definition
    assert plan["url"] == f"{CANONICAL}/PlanDefinition/calcinosis-cutis-work-up"
    assert plan["library"] == [f"{CANONICAL}/Library/CalcinosisCutis|1.0.0"]
    ids = [action["id"] for action in plan["action"]]
    assert ids == ["type-calciphylaxis", "type-metastatic", "type-iatrogenic", "type-dystrophic", "type-idiopathic",
                   "group-baseline", "group-myositis", "group-autoimmune", "group-milk-alkali", "group-imaging"]
    groups = {action["id"]: action for action in plan["action"] if action["id"].startswith("group-")}
    tests = panel_tests(assessor.library)
    for group_id, action in groups.items():
        members = [t for t in tests if t["group"] == group_id.removeprefix("group-")]
        assert [a["title"] for a in action["action"]] == [t["name"] for t in members]
    imaging = [a for a in groups["group-imaging"]["action"]]
    assert imaging[-1]["code"][0]["coding"][0] == {"system": "http://snomed.info/sct", "code": "240977001",
                                                   "display": "Biopsy of skin"}
    assert any(d["label"] == "Histopathology" for d in imaging[-1]["documentation"])
    bone_scan = next(a for a in imaging if a["title"] == "Bone scintigraphy")
    assert "coding" not in bone_scan["code"][0]  # proposed by name only, as the library says
    citations = [a for a in plan["relatedArtifact"] if a["type"] == "citation"]
    assert citations[0]["url"] == "https://pubmed.ncbi.nlm.nih.gov/28846311/"


def test_every_plan_condition_is_a_boolean_of_the_library(artifacts, assessor):
    """Each condition names defines of the library: identifiers are Boolean defines, and each CQL
    expression compiles to a Boolean when added to the library as a define."""
    source = assessor.library.source
    expressions = []
    for action in artifacts.plan_definition["action"]:
        for condition in action.get("condition", ()):
            expression = condition["expression"]
            if expression["language"] == "text/cql-identifier":
                assert str(assessor.library.define_types[expression["expression"]]) == "Boolean"
            else:
                assert expression["language"] == "text/cql"
                expressions.append(expression["expression"])
    assert expressions == [type_condition(f"{t.capitalize()} Risk") for t in
                           ("calciphylaxis", "metastatic", "iatrogenic", "dystrophic", "idiopathic")]
    checks = "".join(f'\ndefine "Condition Check {i}": {text}\n' for i, text in enumerate(expressions))
    extended = compile_library(source + checks, model=load_model_info(Path(SETTINGS["MODEL_INFO"])),
                               valueset_dir=Path(SETTINGS["VALUESET_DIR"]))
    assert {str(extended.define_types[f"Condition Check {i}"]) for i in range(len(expressions))} == {"Boolean"}


def test_value_sets_are_the_files_the_engine_reads(artifacts):
    for path in Path(SETTINGS["VALUESET_DIR"]).glob("*.json"):
        written = json.loads(path.read_text(encoding="utf-8"))
        published = artifacts.read("ValueSet", written["id"])
        assert published["url"] == written["url"]
        assert artifacts.search("ValueSet", url=written["url"]) == [published]
    assert artifacts.search("ValueSet", url=f"{CANONICAL}/ValueSet/lupus|0.0.1") == []


def test_expand_lists_the_codes_the_engine_matches_and_its_filters(artifacts):
    lupus = artifacts.value_set("lupus")
    expansion = artifacts.expand(lupus)["expansion"]
    listed = {(c["system"], c["code"]) for c in expansion["contains"]}
    assert listed == {(c.system, c.code) for c in lupus.engine.codes}
    assert ("http://snomed.info/sct", "55464009") in listed
    assert expansion["total"] == len(listed)
    assert expansion["parameter"] == [{"name": "filter", "valueString": "http://hl7.org/fhir/sid/icd-10-cm is-a M32"}]


@pytest.mark.parametrize(("system", "code", "member"), [
    ("http://hl7.org/fhir/sid/icd-10-cm", "M32.14", True),     # below the is-a filter
    ("http://snomed.info/sct", "55464009", True),             # listed
    ("http://hl7.org/fhir/sid/icd-10-cm", "M34.0", False),    # systemic sclerosis, another value set
    ("http://loinc.org", "55464009", False),                  # right code, wrong system
])
def test_validate_code_answers_as_the_rules_do(artifacts, system, code, member):
    lupus = artifacts.value_set(url=f"{CANONICAL}/ValueSet/lupus")
    answer = artifacts.validate_code(lupus, system, code)
    validate_r4(answer)
    result = {p["name"]: p for p in answer["parameter"]}
    assert result["result"]["valueBoolean"] is member is lupus.engine.contains(system, code)
