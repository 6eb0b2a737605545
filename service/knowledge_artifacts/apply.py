"""`PlanDefinition/$apply` (R4): a Parameters body with `subject` and a `data` Bundle -> a CarePlan.

The patient's data is assessed by the same Assessor as `$assess`, and the same output builders
write the resources, so both operations agree. The CarePlan follows the shape of the clinical
reasoning reference implementation: `intent` proposal, `instantiatesCanonical` the PlanDefinition,
one activity referencing a contained `RequestGroup` whose actions reference the contained proposed
`ServiceRequest`s (grouped by panel group, as the plan's actions are). The `RiskAssessment` with
the grades and any `OperationOutcome` of evaluation problems are contained as well and named in
`supportingInfo`, since a contained resource must be referenced from its container. Contained
resources carry no narrative (R4 dom-1); the CarePlan's own narrative says what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..assessment_model import AssessmentRun, InputIssue, PatientAssessment
from ..errors import InputError
from ..fhir_outputs.care_plan import build_service_requests, care_plan_description
from ..fhir_outputs.ids import content_id, fhir_instant, resource_id
from ..fhir_outputs.narrative import items, narrative, paragraph
from ..fhir_outputs.operation_outcome import issue_component
from ..fhir_outputs.references import reference
from ..fhir_outputs.risk_assessment import build_risk_assessment
from ..fhir_outputs.validation import validate_resource
from ..fhir_outputs.vocabulary import care_plan_title, panel_group_label, panel_group_order

REQUEST_GROUP_KIND = "RequestGroup"
APPLY_CARE_PLAN_KIND = "CarePlan/$apply"


@dataclass(frozen=True, slots=True)
class ApplyRequest:
    """What `$apply` was asked: the subject as given and the data Bundle to assess."""

    subject: str
    data: Mapping[str, Any]


def read_apply_parameters(body: Any) -> ApplyRequest:
    """The subject and data of an R4 `$apply` Parameters body; InputError (4xx) naming the element otherwise.

    `subject` is a string ("Patient/123"), or a Reference; one subject per call. `data` is the
    patient's record as a Bundle. Other `$apply` parameters (encounter, practitioner, setting...)
    do not change what the rules conclude and are ignored.
    """
    if not isinstance(body, Mapping) or body.get("resourceType") != "Parameters":
        kind = body.get("resourceType") if isinstance(body, Mapping) else type(body).__name__
        raise InputError.single(f"$apply expects a Parameters resource, not {str(kind)[:40]!r}",
                                location="resourceType")
    parameters = body.get("parameter")
    if not isinstance(parameters, list):
        raise InputError.single("Parameters.parameter must be an array holding subject and data",
                                location="Parameters.parameter")
    subjects: list[tuple[int, str]] = []
    data: list[tuple[int, Any]] = []
    for index, parameter in enumerate(parameters):
        where = f"Parameters.parameter[{index}]"
        if not isinstance(parameter, Mapping):
            raise InputError.single("a parameter must be an object", location=where)
        name = parameter.get("name")
        if name == "subject":
            subjects.append((index, _subject_text(parameter, where)))
        elif name == "data":
            data.append((index, parameter.get("resource")))
    if len(subjects) != 1:
        raise InputError.single(
            f"$apply needs exactly one subject parameter (found {len(subjects)}); apply once per patient",
            location="Parameters.parameter", code="required" if not subjects else "not-supported")
    if len(data) != 1:
        raise InputError.single(
            f"$apply needs the patient's data as one data parameter holding a Bundle (found {len(data)}); "
            "this service does not read data from elsewhere on $apply", location="Parameters.parameter",
            code="required" if not data else "not-supported")
    index, bundle = data[0]
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise InputError.single("the data parameter must hold a Bundle resource",
                                location=f"Parameters.parameter[{index}].resource")
    return ApplyRequest(subjects[0][1], bundle)


def _subject_text(parameter: Mapping[str, Any], where: str) -> str:
    value = parameter.get("valueString")
    if value is None and isinstance(parameter.get("valueReference"), Mapping):
        value = parameter["valueReference"].get("reference")
    if not isinstance(value, str) or not value.strip():
        raise InputError.single("subject must be a valueString (or valueReference) naming the patient, "
                                "e.g. \"Patient/123\"", location=f"{where}.valueString")
    return value.strip()


def subject_assessment(run: AssessmentRun, subject: str) -> PatientAssessment:
    """The assessment of the patient `subject` names ("Patient/123", "123", or the data's own reference)."""
    wanted = subject.rsplit("/", 1)[-1]
    for patient in run.patients:
        if subject == patient.patient_reference or wanted in (patient.patient_id,
                                                             patient.patient_reference.rsplit("/", 1)[-1]):
            return patient
    raise InputError.single(f"the subject {subject[:80]!r} is not a patient of the data Bundle "
                            f"({len(run.patients)} patient(s) assessed)", location="Parameters.parameter",
                            code="not-found")


def apply_plan_definition(run: AssessmentRun, subject: str, *, plan_url: str, plan_version: str | None
                          ) -> dict[str, Any]:
    """The validated CarePlan for `subject`, from the assessment `run` of the data Bundle."""
    patient = subject_assessment(run, subject)
    canonical = f"{plan_url}|{plan_version}" if plan_version else plan_url
    risk = _contained(build_risk_assessment(patient))
    requests = [_contained(request) for request in build_service_requests(patient, f"#{risk['id']}")]
    group = _request_group(patient, requests, canonical)
    outcomes = _outcomes(patient, run.issues)
    contained = [group, *requests, risk, *outcomes]
    known = {f"#{resource['id']}": resource["resourceType"] for resource in contained}
    description = care_plan_description(patient)
    lines = [f"Proposed: {request['code'].get('text', '')}" for request in requests] or ["Nothing proposed."]
    if outcomes:
        lines.append(f"Evaluation problems: {sum(len(o['issue']) for o in outcomes)} (contained OperationOutcome)")
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": resource_id(patient, APPLY_CARE_PLAN_KIND),
        "text": narrative(paragraph(description), items(lines)),
        "contained": [validate_resource(resource, known) for resource in contained],
        "instantiatesCanonical": [canonical],
        "status": "draft",
        "intent": "proposal",
        "title": care_plan_title(),
        "description": description,
        "subject": reference(patient.patient_reference, "Patient"),
        "created": fhir_instant(patient.assessed_at),
        "activity": [{"reference": {"reference": f"#{group['id']}", "type": REQUEST_GROUP_KIND}}],
        "supportingInfo": [{"reference": f"#{resource['id']}", "type": resource["resourceType"]}
                           for resource in (risk, *outcomes)],
    }
    return validate_resource(plan, known)


def _contained(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource ready to be contained: no narrative (dom-1)."""
    return {key: value for key, value in resource.items() if key != "text"}


def _request_group(patient: PatientAssessment, requests: Sequence[dict[str, Any]], canonical: str) -> dict[str, Any]:
    """The RequestGroup holding the proposed ServiceRequests, one action per panel group as the plan has."""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for test, request in zip(patient.recommended, requests):
        by_group.setdefault(test.group, []).append({
            "title": request["code"].get("text") or test.name,
            "description": test.reason.strip() or None,
            "resource": {"reference": f"#{request['id']}", "type": "ServiceRequest"},
        })
    order = {group: index for index, group in enumerate(panel_group_order())}
    actions = [{"prefix": group, "title": panel_group_label(group), "groupingBehavior": "logical-group",
                "selectionBehavior": "any",
                "action": [{key: value for key, value in action.items() if value} for action in members]}
               for group, members in sorted(by_group.items(), key=lambda item: order.get(item[0], len(order)))]
    group: dict[str, Any] = {
        "resourceType": REQUEST_GROUP_KIND,
        "id": resource_id(patient, REQUEST_GROUP_KIND),
        "instantiatesCanonical": [canonical],
        "status": "draft",
        "intent": "proposal",
        "subject": reference(patient.patient_reference, "Patient"),
        "authoredOn": fhir_instant(patient.assessed_at),
    }
    if actions:
        group["action"] = actions
    return group


def _outcomes(patient: PatientAssessment, bundle_issues: Sequence[InputIssue]) -> list[dict[str, Any]]:
    """The patient's evaluation problems, then the data Bundle's own, each an OperationOutcome (ids as `$assess`)."""
    outcomes = []
    if patient.issues:
        outcomes.append({"resourceType": "OperationOutcome", "id": resource_id(patient, "OperationOutcome"),
                         "issue": [issue_component(issue) for issue in patient.issues]})
    if bundle_issues:
        lines = ["\x1e".join((i.severity, i.code, i.diagnostics, i.location or "")) for i in bundle_issues]
        outcomes.append({"resourceType": "OperationOutcome", "id": content_id("OperationOutcome", lines),
                         "issue": [issue_component(issue) for issue in bundle_issues]})
    return outcomes
