"""PatientAssessment -> CarePlan proposal + one draft ServiceRequest per recommended test.

R4 lets ServiceRequest.reasonReference point only at Condition | Observation | DiagnosticReport
| DocumentReference and CarePlan.addresses only at Condition. So the reason is the calcinosis
Condition when there is one, otherwise the out-of-range Observations the rules used; the
RiskAssessment itself is linked through supportingInfo (Reference(Any)). reasonCode.text always
carries the plain-language reason of the test, and `note` repeats it beside the source.

The CarePlan's description is two sentences (the leading type and grade; what is proposed, counted,
and what else the plan holds); the rest is structured, one activity per test of the work-up:
- proposed: a `reference` to its draft ServiceRequest. R4 allows an activity a reference or a
  detail, not both (cpl-3), so its short why is the activity's `progress` annotation (the
  ServiceRequest itself holds the reason, the citations and the coding);
- could not be confirmed as missing (a result may be among data that was not read): a `detail`,
  status not-started, statusReason "could not confirm: ...", never a ServiceRequest, since a draft
  proposal would read as "this test is missing";
- left out on purpose (no 24-hour urine in kidney failure ...): a `detail`, status cancelled,
  statusReason the full reason;
- already available: a result on file is a `detail`, status completed, its value and date in the
  description and the Observation as `outcomeReference`; an open order is a `reference` to that
  order, with `progress` saying it is already ordered.
Each detail's description is one short clause; its `code` carries the coding and the plain name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..assessment_model import (AvailableTest, OmittedTest, PanelTest, PatientAssessment, UnconfirmedTest,
                                citations_text)
from ..bibliography import related_artifact_extensions
from .ids import fhir_instant, resource_id, urn
from .narrative import field_table, items, narrative, paragraph, sources_in_brief, table
from .references import reference, unique_sorted
from .vocabulary import (calcinosis_type_displays, care_plan_title, code_system_name, is_abnormal_flag,
                         panel_group_label, panel_test_code)

SERVICE_REQUEST_KIND = "ServiceRequest"
CARE_PLAN_KIND = "CarePlan"
IMAGING_GROUP = "imaging"


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
        request: dict[str, Any] = {"resourceType": "ServiceRequest", "id": service_request_id(patient, test),
                                   "text": service_request_narrative(test)}
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
        reason = test.reason.strip()
        if reason:
            request["reasonCode"] = [{"text": reason}]
        if reasons:
            request["reasonReference"] = reasons
        request["supportingInfo"] = [reference(risk_assessment_urn, "RiskAssessment")]
        notes = ([f"Source: {citations_text(test.citations)}"] if test.citations else []) + (
            [f"Reason: {reason}"] if reason else [])
        if notes:
            request["note"] = [{"text": text} for text in notes]
        requests.append(request)
    return requests


def service_request_narrative(test: PanelTest) -> dict[str, str]:
    """Test, reason, source and status, as a small table."""
    return narrative(field_table([
        ("Test", coded_label(test)),
        ("Reason", test.reason.strip()),
        ("Source", sources_in_brief(test.citations)),
        ("Status", "Proposal (draft): not ordered"),
    ]))


def coded_label(test: PanelTest | OmittedTest | UnconfirmedTest | AvailableTest) -> str:
    """'Skin biopsy (SNOMED CT 240977001: Biopsy of skin)': the plain name, then the code it carries."""
    if not (test.code and test.system):
        return test.name
    return f"{test.name} ({code_system_name(test.system)} {test.code}: {test.display})"


@dataclass(frozen=True, slots=True)
class _Activity:
    """One CarePlan.activity and the row the narrative shows for it."""

    element: dict[str, Any]
    name: str
    status: str  # as a person says it: "proposed", "result on file" ...
    why: str


def build_care_plan(patient: PatientAssessment, risk_assessment_urn: str,
                    service_requests: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The CarePlan proposal whose activities reference the ServiceRequests (by urn:uuid) and hold
    every other test of the work-up with its status and why."""
    activities = care_plan_activities(patient, service_requests)
    description = care_plan_description(patient)
    notes = [f"{alert.display} ({alert.order_reference}): {alert.message}" for alert in patient.order_alerts]
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": care_plan_id(patient),
        "text": _care_plan_narrative(description, activities, notes),
        "status": "active",
        "intent": "proposal",
        "title": care_plan_title(),
        "description": description,
        "subject": reference(patient.patient_reference, "Patient"),
        "created": fhir_instant(patient.assessed_at),
    }
    if patient.calcinosis_condition:
        plan["addresses"] = [reference(patient.calcinosis_condition, "Condition")]
    # The results and orders the plan names as already available are cited too, so every value
    # it mentions can be traced to what the caller sent.
    cited = unique_sorted(test.source for test in patient.available if test.source)
    plan["supportingInfo"] = [reference(risk_assessment_urn, "RiskAssessment")] + [
        reference(source) for source in cited]
    if activities:
        plan["activity"] = [activity.element for activity in activities]
    if notes:
        plan["note"] = [{"text": text} for text in notes]
    return plan


def care_plan_activities(patient: PatientAssessment, service_requests: Sequence[dict[str, Any]]) -> list[_Activity]:
    """Proposed, could not be confirmed, not proposed, already available: in that order."""
    activities = [_proposed_activity(test, request) for test, request in zip(patient.recommended, service_requests)]
    activities += [_unconfirmed_activity(test) for test in patient.unconfirmed]
    activities += [_omitted_activity(test) for test in patient.omitted]
    activities += [_available_activity(test) for test in patient.available]
    return activities


def _proposed_activity(test: PanelTest, request: dict[str, Any]) -> _Activity:
    why = _sentence(test.reason) or f"{panel_group_label(test.group)}."
    element = {"reference": reference(urn(request["id"]), "ServiceRequest", test.name),
               "progress": [{"text": why}]}
    return _Activity(element, test.name, "proposed", _clause(why))


def unconfirmed_activity_detail(test: UnconfirmedTest) -> dict[str, Any]:
    """CarePlan.activity.detail for a test that could not be confirmed as missing: not an order."""
    detail: dict[str, Any] = {"code": panel_test_code(test), "status": "not-started",
                              "statusReason": {"text": test.reason.strip()}}
    if test.purpose.strip():
        detail["reasonCode"] = [{"text": test.purpose.strip()}]
    detail["description"] = (f"Could not confirm as missing ({_clause(_unprefixed(test.reason))}): "
                             "check for a current result before ordering.")
    return detail


def _unconfirmed_activity(test: UnconfirmedTest) -> _Activity:
    return _Activity({"detail": unconfirmed_activity_detail(test)}, test.name, "could not confirm as missing",
                     _clause(_unprefixed(test.reason)))


def _omitted_activity(test: OmittedTest) -> _Activity:
    reason = test.reason.strip()
    detail = {"code": panel_test_code(test), "status": "cancelled", "statusReason": {"text": reason},
              "description": f"Not proposed: {_headline(reason)}."}
    return _Activity({"detail": detail}, test.name, "not proposed", _clause(reason))


def _available_activity(test: AvailableTest) -> _Activity:
    summary = _clause(test.summary)
    if test.ordered and test.source:
        element: dict[str, Any] = {"reference": reference(test.source, "ServiceRequest", test.name),
                                   "progress": [{"text": f"{_capitalized(summary)}: not proposed again."}]}
        return _Activity(element, test.name, "already ordered", summary)
    if test.ordered:
        detail = {"code": panel_test_code(test), "status": "not-started", "statusReason": {"text": summary},
                  "description": f"{_capitalized(summary)}: not proposed again."}
        return _Activity({"detail": detail}, test.name, "already ordered", summary)
    element = {"detail": {"code": panel_test_code(test), "status": "completed",
                          "description": f"Result on file: {summary}."}}
    if test.source:
        element = {"outcomeReference": [reference(test.source)], **element}
    return _Activity(element, test.name, "result on file", summary)


def care_plan_description(patient: PatientAssessment) -> str:
    """Two sentences: the leading type(s) and grade; what is proposed, counted, and what else the
    plan holds (its activities say which tests, and why)."""
    proposed = _proposed_clause(patient.recommended)
    others = []
    results = sum(1 for test in patient.available if not test.ordered)
    ordered = len(patient.available) - results
    if results:
        others.append(f"{_count(results, 'test', 'tests')} already available")
    if ordered:
        others.append(f"{_count(ordered, 'test', 'tests')} already ordered")
    if patient.omitted:
        others.append(f"{len(patient.omitted)} not proposed")
    if patient.unconfirmed:
        others.append(f"{_count(len(patient.unconfirmed), 'test', 'tests')} could not be confirmed as missing")
    if others:
        others[-1] += " (see activities)"
    if patient.order_alerts:
        others.append(f"{_count(len(patient.order_alerts), 'order alert', 'order alerts')} (see notes)")
    return f"{_leading_sentence(patient)} {'; '.join([proposed, *others])}."


def _proposed_clause(tests: Sequence[PanelTest]) -> str:
    if not tests:
        return "No further test is proposed"
    studies = sum(1 for test in tests if test.group == IMAGING_GROUP)
    laboratory = len(tests) - studies
    counted = [text for number, text in (
        (laboratory, _count(laboratory, "laboratory test", "laboratory tests")),
        (studies, _count(studies, "imaging or tissue study", "imaging or tissue studies"))) if number]
    return "Proposed: " + " and ".join(counted)


def _leading_sentence(patient: PatientAssessment) -> str:
    if not patient.grades:
        return "No calcinosis type could be graded."
    top_risk = patient.grades[0].risk
    displays = calcinosis_type_displays()
    leaders = [_uncapitalized(displays.get(grade.type, grade.type)) for grade in patient.grades
               if grade.risk == top_risk]
    if len(leaders) == 1:
        return f"Most likely: {leaders[0]} ({top_risk})."
    return f"Most likely, graded equally: {', '.join(leaders)} ({top_risk})."


def _care_plan_narrative(description: str, activities: Sequence[_Activity], notes: Sequence[str]) -> dict[str, str]:
    blocks = [paragraph(description)]
    if activities:
        blocks.append(table(("Test", "Status", "Why"), [(a.name, a.status, a.why) for a in activities]))
    if notes:
        blocks.append(paragraph("Order alerts:") + items(notes))
    return narrative(*blocks)


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _unprefixed(reason: str) -> str:
    """'could not confirm: the search ...' -> 'the search ...' (the sentence already says it)."""
    head, separator, rest = reason.partition(":")
    return rest.strip() if separator and head.strip().lower() == "could not confirm" else reason


def _headline(reason: str) -> str:
    """The library writes a reason as 'what: why in detail' ("kidney failure or dialysis on file
    (...): a patient on dialysis ... may pass little or no urine ..."): the part before the first
    colon is the short clause (the full reason is kept beside it)."""
    head, separator, _ = reason.partition(": ")
    return _clause(head if separator and head.strip() else reason)


def _clause(text: str) -> str:
    """Text ready to sit inside a sentence: trimmed, without its own final full stop."""
    return text.strip().rstrip(".").strip()


def _sentence(text: str) -> str:
    """Text as a sentence of its own, ending in one full stop; "" for no text."""
    clause = _clause(text)
    return f"{clause}." if clause else ""


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _uncapitalized(text: str) -> str:
    """'Metastatic calcinosis cutis' -> 'metastatic calcinosis cutis' (a display inside a sentence)."""
    return text[:1].lower() + text[1:] if text[1:2].islower() else text
