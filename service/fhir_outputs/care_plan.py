"""PatientAssessment -> CarePlan proposal + one draft ServiceRequest per recommended test.

R4 lets ServiceRequest.reasonReference point only at Condition | Observation | DiagnosticReport
| DocumentReference and CarePlan.addresses only at Condition. So the reason is the calcinosis
Condition when there is one, otherwise the out-of-range Observations the rules used; the
RiskAssessment itself is linked through supportingInfo (Reference(Any)). reasonCode.text always
carries the plain-language reason of the test.

A test that may have a result among data that was not read (a search read only in part, a
result that could not be used) is never a ServiceRequest: a draft proposal would read as "this
test is missing". It is a CarePlan activity `detail` instead (status not-started, statusReason
"could not confirm: ..."), whose description asks to check for a current result before ordering.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..assessment_model import PanelTest, PatientAssessment, UnconfirmedTest, citations_text, omitted_by_reason
from ..bibliography import related_artifact_extensions
from .ids import fhir_instant, resource_id, urn
from .references import reference, unique_sorted
from .vocabulary import (calcinosis_type_displays, care_plan_title, group_panel_tests, is_abnormal_flag,
                         panel_group_label, panel_test_code, risk_display)

SERVICE_REQUEST_KIND = "ServiceRequest"
CARE_PLAN_KIND = "CarePlan"


def service_request_id(patient: PatientAssessment, test: PanelTest) -> str:
    """Stable id of the ServiceRequest for one recommended test, keyed by its coding (by its name
    when it is proposed by name only)."""
    key = f"{test.system}|{test.code}" if test.coded else f"text|{test.display}"
    return resource_id(patient, SERVICE_REQUEST_KIND, key)



def care_plan_id(patient: PatientAssessment) -> str:
    """Stable id of the patient's single CarePlan."""
    return resource_id(patient, CARE_PLAN_KIND)


def reason_references(patient: PatientAssessment) -> list[dict[str, Any]]:
    """The calcinosis Condition, else the out-of-range Observations used; may be empty."""
    if patient.calcinosis_condition:
        return [reference(patient.calcinosis_condition, "Condition")]
    abnormal = unique_sorted(value.source for value in patient.values_used if is_abnormal_flag(value.flag))
    return [reference(source, "Observation") for source in abnormal]


def build_service_requests(patient: PatientAssessment, risk_assessment_urn: str) -> list[dict[str, Any]]:
    """One draft proposal per recommended test, in the order the core gave."""
    reasons = reason_references(patient)
    requests = []
    for test in patient.recommended:
        request: dict[str, Any] = {"resourceType": "ServiceRequest", "id": service_request_id(patient, test)}
        if test.citations:
            # R4 ServiceRequest has no relatedArtifact: the core extension carries the citations.
            request["extension"] = related_artifact_extensions(test.citations)
        request |= {
            "status": "draft",
            "intent": "proposal",
            "category": [{"text": panel_group_label(test.group)}],
            "code": panel_test_code(test),
            "subject": reference(patient.patient_reference, "Patient"),
            "authoredOn": fhir_instant(patient.assessed_at),
        }
        if test.reason.strip():
            request["reasonCode"] = [{"text": test.reason.strip()}]
        if reasons:
            request["reasonReference"] = reasons
        request["supportingInfo"] = [reference(risk_assessment_urn, "RiskAssessment")]
        if test.citations:
            request["note"] = [{"text": f"Source: {citations_text(test.citations)}"}]
        requests.append(request)
    return requests


def build_care_plan(patient: PatientAssessment, risk_assessment_urn: str,
                    service_requests: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The CarePlan proposal whose activities reference the ServiceRequests (by urn:uuid)."""
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": care_plan_id(patient),
        "status": "active",
        "intent": "proposal",
        "title": care_plan_title(),
        "description": care_plan_description(patient),
        "subject": reference(patient.patient_reference, "Patient"),
        "created": fhir_instant(patient.assessed_at),
    }
    if patient.calcinosis_condition:
        plan["addresses"] = [reference(patient.calcinosis_condition, "Condition")]
    # The results and orders the description names as already available are cited too, so
    # every value the text mentions can be traced to what the caller sent.
    cited = unique_sorted(test.source for test in patient.available if test.source)
    plan["supportingInfo"] = [reference(risk_assessment_urn, "RiskAssessment")] + [
        reference(source) for source in cited]
    activities: list[dict[str, Any]] = [
        {"reference": reference(urn(request["id"]), "ServiceRequest", request["code"]["text"])}
        for request in service_requests]
    activities += [{"detail": unconfirmed_activity_detail(test)} for test in patient.unconfirmed]
    if activities:
        plan["activity"] = activities
    notes = [f"{alert.display} ({alert.order_reference}): {alert.message}" for alert in patient.order_alerts]
    if notes:
        plan["note"] = [{"text": text} for text in notes]
    return plan


def unconfirmed_activity_detail(test: UnconfirmedTest) -> dict[str, Any]:
    """CarePlan.activity.detail for a test that could not be confirmed as missing: not an order."""
    detail: dict[str, Any] = {
        "code": {"coding": [{"system": test.system, "code": test.code, "display": test.display}],
                 "text": test.display},
        "status": "not-started",
        "statusReason": {"text": test.reason.strip()},
        "description": (f"Could not confirm that {test.display} is missing ({_clause(_unprefixed(test.reason))}): "
                        "check for a current result before ordering it."
                        + (f" {test.purpose.strip()}" if test.purpose.strip() else "")),
    }
    return detail


def _unprefixed(reason: str) -> str:
    """'could not confirm: the search ...' -> 'the search ...' (the sentence already says it)."""
    head, separator, rest = reason.partition(":")
    return rest.strip() if separator and head.strip().lower() == "could not confirm" else reason


def care_plan_description(patient: PatientAssessment) -> str:
    """A paragraph a clinician can read: leading type(s) and grade, what is proposed and why, what
    is left out on purpose and why, what is already available."""
    sentences = [_leading_sentence(patient)]
    proposed = group_panel_tests(patient.recommended)
    if proposed:
        for group, tests in proposed:
            names = ", ".join(test.display for test in tests)
            reasons = "; ".join(dict.fromkeys(_clause(test.reason) for test in tests if _clause(test.reason)))
            sentences.append(f"Proposed ({panel_group_label(group)}): {names}.")
            if reasons:
                sentences.append(f"Why: {reasons}.")
    else:
        sentences.append("No further test is proposed.")
    for reason, tests in omitted_by_reason(patient.omitted):
        sentences.append(f"Not proposed: {', '.join(t.display for t in tests)}: {_clause(reason)}.")
    if patient.unconfirmed:
        names = ", ".join(test.display for test in patient.unconfirmed)
        reasons = "; ".join(dict.fromkeys(_clause(_unprefixed(test.reason)) for test in patient.unconfirmed))
        sentences.append(f"Could not confirm as missing, so not proposed ({reasons}): {names}; "
                         "check for a current result before ordering.")
    if patient.available:
        available = "; ".join(f"{test.display} {_clause(test.summary)}" for test in patient.available)
        sentences.append(f"Already available, not proposed again: {available}.")
    if patient.order_alerts:
        sentences.append(f"Order alerts: {len(patient.order_alerts)}, see the notes of this plan.")
    return " ".join(sentences)


def _leading_sentence(patient: PatientAssessment) -> str:
    if not patient.grades:
        return "No calcinosis type could be graded."
    top_risk = patient.grades[0].risk
    displays = calcinosis_type_displays()
    leaders = [displays.get(grade.type, grade.type) for grade in patient.grades if grade.risk == top_risk]
    grade_text = risk_display(top_risk).lower()
    if len(leaders) == 1:
        return f"Most likely type: {leaders[0]} ({grade_text})."
    return f"Most likely types, graded equally: {', '.join(leaders)} ({grade_text})."


def _clause(text: str) -> str:
    """Text ready to sit inside a sentence: trimmed, without its own final full stop."""
    return text.strip().rstrip(".").strip()
