"""Screen one patient: the same pipeline as `$assess`, on that patient's resources.

The resources of one patient (from an export, a Bundle folder, a Spark group) are put in a
collection Bundle and handed to `Assessor.assess`; the RiskAssessment, CarePlan and
ServiceRequests are built by `fhir_outputs.result_bundle.build_patient_resources`, the builder
the `$assess` result Bundle is made of. So a screened patient gets exactly the answer `$assess`
would give for the same resources and instant; nothing clinical is decided here.

What changes is only the packaging: the outputs are written one resource a line (as a Bulk Data
server returns them), so references between them read `RiskAssessment/<id>` rather than the
`urn:uuid:<id>` of a Bundle entry, and input issues name the file and line the resource came from
instead of a Bundle entry. Information-level notes (types not read, ranges applied) are left out
of the problems: they are not problems with the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from ..assessment_model import InputIssue, PatientAssessment
from ..errors import ServiceError
from ..fhir_outputs.result_bundle import build_patient_resources
from .summary_row import summary_row

# The output types, in the order they are written.
OUTPUT_TYPES = ("RiskAssessment", "CarePlan", "ServiceRequest")
# Issues at these severities are data problems; "information" ones are notes.
PROBLEM_SEVERITIES = frozenset({"fatal", "error", "warning"})
_URN_UUID = "urn:uuid:"


@dataclass(slots=True)
class PatientScreen:
    """What screening one patient gives: its output resources, its summary row and its data problems."""

    patient_id: str
    outputs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {kind: [] for kind in OUTPUT_TYPES})
    summary: dict[str, Any] = field(default_factory=dict)
    issues: list[dict[str, Any]] = field(default_factory=list)


def screen_patient(patient_id: str, resources: list[dict[str, Any]], assessor: Any, *, now: datetime,
                   origins: Sequence[str] | None = None,
                   full_urls: Sequence[str | None] | None = None) -> PatientScreen:
    """Assess `resources` (all of one patient's, decoded) with `assessor` at `now`.

    `origins[i]` says where `resources[i]` was read ("Observation.ndjson:17"), so its issues point
    there; `full_urls[i]` is the fullUrl it had in a source Bundle (references in Bundles written
    with `urn:uuid:` need it). Problems reading the source that were found before this (bad lines)
    are the caller's to report; this reports what the pipeline found.
    """
    entries = []
    for index, resource in enumerate(resources):
        entry: dict[str, Any] = {"resource": resource}
        if full_urls is not None and full_urls[index]:
            entry["fullUrl"] = full_urls[index]
        entries.append(entry)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    screen = PatientScreen(patient_id)
    place = _Places(resources, origins)
    try:
        run = assessor.assess(bundle, now=now)
    except ServiceError as error:  # the whole patient is unusable (e.g. more resources than the limits)
        screen.issues = [place.issue_record(patient_id, issue) for issue in error.issues]
        screen.summary = summary_row(patient_id, None, len(screen.issues))
        return screen
    issues = [issue for issue in run.issues if issue.severity in PROBLEM_SEVERITIES]
    assessment = _the_patient(run.patients, patient_id)
    for patient in run.patients:
        issues.extend(issue for issue in patient.issues if issue.severity in PROBLEM_SEVERITIES)
        if patient is assessment:
            _add_outputs(screen, patient)
    if assessment is None:
        issues.append(InputIssue("error", "not-found", f"no assessable Patient with id '{patient_id}' among "
                                 f"the {len(resources)} resource(s) that refer to it"))
    screen.issues = [place.issue_record(patient_id, issue) for issue in issues]
    screen.summary = summary_row(patient_id, assessment, len(screen.issues))
    return screen


def _the_patient(patients: Sequence[PatientAssessment], patient_id: str) -> PatientAssessment | None:
    for patient in patients:
        if patient.patient_id == patient_id:
            return patient
    return patients[0] if len(patients) == 1 else None


def _add_outputs(screen: PatientScreen, patient: PatientAssessment) -> None:
    resources = [resource for resource in build_patient_resources(patient) if resource["resourceType"] in OUTPUT_TYPES]
    local = {f"{_URN_UUID}{resource['id']}": f"{resource['resourceType']}/{resource['id']}" for resource in resources}
    for resource in resources:
        _point_references(resource, local)
        screen.outputs[resource["resourceType"]].append(resource)


def _point_references(node: Any, local: dict[str, str]) -> None:
    """Rewrite `reference` values naming a sibling output by urn:uuid to its `Type/id` (in place)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                if value in local:
                    node[key] = local[value]
            elif isinstance(value, (dict, list)):
                _point_references(value, local)
    elif isinstance(node, list):
        for item in node:
            _point_references(item, local)


class _Places:
    """Turns Bundle entry positions of the collection Bundle built here back into source positions."""

    def __init__(self, resources: Sequence[dict[str, Any]], origins: Sequence[str] | None) -> None:
        self.resources = resources
        self.origins = origins

    def source(self, index: int | None) -> str | None:
        if index is None or self.origins is None or not 0 <= index < len(self.origins):
            return None
        return self.origins[index]

    def path(self, index: int | None, path: str | None) -> str | None:
        """FHIRPath-like place inside the resource: 'Observation.valueQuantity.unit'."""
        if index is None or not 0 <= index < len(self.resources):
            return None
        kind = self.resources[index].get("resourceType") if isinstance(self.resources[index], dict) else None
        kind = kind if isinstance(kind, str) else "Resource"
        inner = (path or "").removeprefix("resource").lstrip(".")
        return f"{kind}.{inner}" if inner else kind

    def locate(self, index: int, path: str) -> str | None:
        where = self.source(index)
        inside = self.path(index, path)
        return f"{where} {inside}" if where and inside else None

    def issue_record(self, patient_id: str, issue: InputIssue) -> dict[str, Any]:
        record: dict[str, Any] = {"patient_id": patient_id, "severity": issue.severity, "code": issue.code,
                                  "diagnostics": issue.diagnostics_located(self.locate)}
        source = self.source(issue.entry_index)
        if source:
            record["source"] = source
        location = self.path(issue.entry_index, issue.path) if issue.entry_index is not None else issue.location
        if location:
            record["location"] = location
        return record
