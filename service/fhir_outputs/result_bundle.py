"""Assessments -> the collection Bundle `$assess` returns.

Per patient, in this order: RiskAssessment, CarePlan, its ServiceRequests, and an
OperationOutcome when any of that patient's input was skipped. Issues not tied to a patient
close the Bundle in one more OperationOutcome. Ids are deterministic (see `ids`), so the same
input gives the same Bundle.

The builders write valid R4 by construction: codes come from the shipped vocabularies (an unknown
one raises `OutputValidationError` while building), and empty texts are left out. The test suite
validates what they build with `fhir.resources.R4B`, over the fixtures and over random assessments;
validating every resource again on every request cost more than building it, so at runtime it is
one setting away (`VALIDATE_OUTPUTS`), not on by default.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..assessment_model import InputIssue, PatientAssessment
from .care_plan import build_care_plan, build_service_requests
from .empty_elements import without_empty_elements
from .ids import content_id, fhir_instant, resource_id, stable_id, urn
from .operation_outcome import issue_component, outcome_narrative
from .risk_assessment import build_risk_assessment
from .validation import validated_if

OPERATION_OUTCOME_KIND = "OperationOutcome"


def build_patient_resources(patient: PatientAssessment) -> list[dict[str, Any]]:
    """The unvalidated output resources of one patient, in Bundle order."""
    risk = build_risk_assessment(patient)
    risk_urn = urn(risk["id"])
    requests = build_service_requests(patient, risk_urn)
    resources = [risk, build_care_plan(patient, risk_urn, requests), *requests]
    if patient.issues:
        resources.append(_outcome(resource_id(patient, OPERATION_OUTCOME_KIND), patient.issues))
    return [without_empty_elements(resource) for resource in resources]


def build_result_bundle(patients: Sequence[PatientAssessment], bundle_issues: Sequence[InputIssue], *,
                        validate: bool = False) -> dict[str, Any]:
    """The result Bundle as a JSON-ready dict (None and empty elements left out).

    Raises `OutputValidationError` for a code outside the output vocabularies and, with `validate`
    (the `VALIDATE_OUTPUTS` setting), when any resource is not valid R4: that is a defect here,
    never something to hand to a caller.
    """
    resources = [resource for patient in patients for resource in build_patient_resources(patient)]
    if bundle_issues:
        issue_lines = [_issue_key(issue) for issue in bundle_issues]
        resources.append(without_empty_elements(_outcome(content_id(OPERATION_OUTCOME_KIND, issue_lines),
                                                         bundle_issues)))
    known_types = {urn(resource["id"]): resource["resourceType"] for resource in resources}
    entries = [{"fullUrl": urn(resource["id"]), "resource": validated_if(validate, resource, known_types)}
               for resource in resources]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": stable_id("Bundle", *(entry["resource"]["id"] for entry in entries)),
        "type": "collection",
    }
    if patients:
        bundle["timestamp"] = fhir_instant(max(patient.assessed_at for patient in patients))
    # Every entry's resource was validated above; validating the Bundle around them again would
    # re-validate each resource (half the cost of a response), so only the envelope is checked.
    bundle = validated_if(validate, bundle, known_types)
    if entries:
        bundle["entry"] = entries
    return bundle


def _outcome(outcome_id: str, issues: Sequence[InputIssue]) -> dict[str, Any]:
    entries = [issue_component(issue) for issue in issues]
    return {"resourceType": "OperationOutcome", "id": outcome_id, "text": outcome_narrative(entries),
            "issue": entries}


def _issue_key(issue: InputIssue) -> str:
    return "\x1e".join((issue.severity, issue.code, issue.diagnostics, issue.location or ""))
