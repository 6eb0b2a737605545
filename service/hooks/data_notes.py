"""The data notes of a card: what was skipped, partial or doubtful in the data, for two readers.

The EHR's developers need every note with its location in the request they sent: the core reports
issues against the collection Bundle it was handed (entry 3, "resource.valueQuantity"), which the
caller never saw, so each issue's entry number and path are translated back through the entry map
`prefetch.gather_bundle` builds ("prefetch.labs.entry[0].resource...",
"context.draftOrders.entry[2].resource...", or, for data the service read from fhirServer itself,
the resource it read: "Observation/o1..."). These go, located, in the card's extension.

The clinician needs only the notes that changed the result, in a few plain words and without
locations: a search read in part, results of the assessed tests that could not be read ("2 results
could not be read: unknown unit"), an age that is unknown, a remark of the EHR about what it sent.
At most three such lines reach the card's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ..assessment_model import DataGap, InputIssue, PatientAssessment
from ..terminology import load_terminology
from .card_data import CARD_DATA
from .order_codes import LabTestGrouping

# (entry location, resource location) in the caller's request, one per collection Bundle entry.
EntryLocations = Sequence[tuple[str, str]]

_AGE_UNKNOWN = "age unknown"
_READ_PROBLEMS = ("fatal", "error", "warning")


@dataclass(frozen=True, slots=True)
class DataNote:
    """One note for the EHR's developers: how serious, what, and where in what the caller sent.

    `kind` says what the note is about, for choosing the clinician's lines: "partial" (a search read
    only in part), "ehr" (a remark the EHR or its FHIR server made about its own data) or "issue".
    """

    severity: str  # "error", "warning" or "information"
    text: str
    location: str | None = None
    kind: str = "issue"

    def as_json(self) -> dict[str, str]:
        """The note as the card's extension carries it (no location when none can be given)."""
        note = {"severity": self.severity, "text": self.text}
        if self.location:
            note["location"] = self.location
        return note


def entry_location(index: int, path: str, entry_locations: EntryLocations) -> str | None:
    """Where entry `index` of the core's Bundle (at `path` inside it: "" for the entry, "resource..." inside its
    resource) came from in the caller's request; None for an entry the map does not hold."""
    if not 0 <= index < len(entry_locations):
        return None
    entry, resource = entry_locations[index]
    if path == "resource" or path.startswith(("resource.", "resource[")):
        return resource + path[len("resource"):]
    return entry + (f".{path}" if path else "")


def caller_location(issue: InputIssue, entry_locations: EntryLocations) -> str | None:
    """The issue's location with its bundle entry replaced by where that entry came from; its own location
    when it is not about an entry the map holds."""
    if issue.entry_index is None:
        return issue.location
    return entry_location(issue.entry_index, issue.path or "", entry_locations) or issue.location


def _issue_note(issue: InputIssue, entry_locations: EntryLocations, text: str | None = None) -> DataNote:
    where = caller_location(issue, entry_locations)
    if where is not None and (where == "Bundle" or where.startswith("Bundle.")):
        where = None  # the service's own collection Bundle: nothing the caller could look up
    located = issue.diagnostics_located(lambda index, path: entry_location(index, path, entry_locations))
    return DataNote(issue.severity, text or located, where)


def located_notes(gathering_notes: Iterable[DataNote], run_issues: Iterable[InputIssue],
                  patient_issues: Iterable[InputIssue], entry_locations: EntryLocations, *,
                  patient_provided: bool, wording: Mapping[str, Any] = CARD_DATA["data_notes"]) -> tuple[DataNote, ...]:
    """Gathering notes, then the run's and the patient's input issues, located in the caller's request;
    at most `limit` notes, then one saying how many more.

    Without a Patient resource the core's "age unknown" remark becomes the plain statement that
    adult default reference ranges could not be chosen by age.
    """
    notes: list[DataNote] = []
    seen: set[tuple[str, str | None]] = set()
    issue_notes = (
        _issue_note(issue, entry_locations,
                    str(wording["demographics_missing"])
                    if not patient_provided and issue.diagnostics.startswith(_AGE_UNKNOWN) else None)
        for issue in (*run_issues, *patient_issues))
    for note in (*gathering_notes, *issue_notes):
        if (note.text, note.location) not in seen:
            seen.add((note.text, note.location))
            notes.append(note)
    limit = int(wording["limit"])
    if len(notes) <= limit:
        return tuple(notes)
    more = DataNote("information", str(wording["more"]).format(count=len(notes) - limit))
    return tuple(notes[:limit]) + (more,)


# -- what the clinician reads -----------------------------------------------------------------------

def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


def _entry_resource(bundle: Mapping[str, Any], index: int | None) -> dict[str, Any] | None:
    entries = bundle.get("entry") or []
    if index is None or not 0 <= index < len(entries) or not isinstance(entries[index], dict):
        return None
    resource = entries[index].get("resource")
    return resource if isinstance(resource, dict) else None


def _codings(resource: Mapping[str, Any]) -> list[tuple[str, str]]:
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    return [(str(c.get("system") or ""), str(c.get("code") or "")) for c in codings or ()
            if isinstance(c, dict) and isinstance(c.get("code"), str)]


def _counts_for_the_work_up(resource: Mapping[str, Any], assessment: PatientAssessment,
                            grouping: LabTestGrouping) -> bool:
    """A result of an analyte the assessment could not settle (its results may not all have been read),
    or of the same test as one it could not confirm: not reading it changed the result."""
    terminology = load_terminology()
    incomplete = set(assessment.incomplete_analytes)
    unconfirmed = [(t.system, t.code) for t in assessment.unconfirmed if t.code]
    for system, code in _codings(resource):
        found = terminology.analyte_for(system, code)
        if found is not None and found.analyte in incomplete:
            return True
        if unconfirmed and grouping.is_ordered(system, code, unconfirmed):
            return True
    return False


def _reference(resource: Mapping[str, Any]) -> str | None:
    if isinstance(resource.get("resourceType"), str) and isinstance(resource.get("id"), str):
        return f"{resource['resourceType']}/{resource['id']}"
    return None


def _result_lines(issues: Iterable[InputIssue], assessment: PatientAssessment, bundle: Mapping[str, Any],
                  grouping: LabTestGrouping, wording: Mapping[str, Any]) -> list[str]:
    """'2 results could not be read: unknown unit': results of the assessed tests the rules could not use,
    then results used with a caveat, each kind counted once per resource."""
    used = {v.source for v in assessment.values_used} | {a.source for a in assessment.available}
    unread: dict[str, set[int]] = {}
    caveats: dict[str, set[int]] = {}
    for issue in issues:
        if issue.severity not in _READ_PROBLEMS:
            continue
        resource = _entry_resource(bundle, issue.entry_index)
        if resource is None or resource.get("resourceType") != "Observation":
            continue
        key = id(resource)
        if _reference(resource) in used:
            reason = wording["caveat_reasons"].get(issue.code)
            if reason:
                caveats.setdefault(reason, set()).add(key)
        elif _counts_for_the_work_up(resource, assessment, grouping):
            reason = wording["unread_reasons"].get(issue.code, wording["unread_reason_other"])
            unread.setdefault(reason, set()).add(key)
    lines = [str(wording["unread_line"]).format(count=len(keys), results=_plural(len(keys), "result"), reason=reason)
             for reason, keys in unread.items()]
    lines += [str(wording["caveat_line"]).format(count=len(keys), results=_plural(len(keys), "result"), reason=reason)
              for reason, keys in caveats.items()]
    return lines


def _partial_search_lines(assessment: PatientAssessment, data_gaps: Iterable[DataGap],
                          wording: Mapping[str, Any]) -> list[str]:
    searches = dict.fromkeys(wording["search_of_resource_type"].get(gap.resource_type, gap.resource_type.lower())
                             for gap in data_gaps)
    searches.update(dict.fromkeys(assessment.incomplete_searches))
    known = list(wording["partial_search"])
    ordered = sorted(searches, key=lambda s: known.index(s) if s in known else len(known))
    return [str(wording["partial_search"].get(s, wording["partial_search_other"])).format(search=s.capitalize())
            for s in ordered]


def _ehr_line(note: DataNote, wording: Mapping[str, Any]) -> str:
    text = note.text.split(": ", 1)[1] if note.text.startswith(("prefetch '", "the FHIR server noted")) else note.text
    text = text.split("the EHR noted: ", 1)[-1]
    words = text.split()
    limit = int(wording["ehr_line_words"])
    short = " ".join(words[:limit]) + ("…" if len(words) > limit else "")
    return str(wording["ehr_line"]).format(text=short)


def clinician_lines(assessment: PatientAssessment, notes: Sequence[DataNote], issues: Iterable[InputIssue], *,
                    bundle: Mapping[str, Any], data_gaps: Iterable[DataGap] = (), patient_provided: bool = True,
                    grouping: LabTestGrouping | None = None,
                    wording: Mapping[str, Any] = CARD_DATA["data_notes"]) -> tuple[str, ...]:
    """The notes that changed the result, in plain words and without locations, most important first:
    searches read in part, an unknown age, results that could not be read, results used with a caveat,
    and what the EHR itself said about its data; at most `clinician_limit` lines."""
    issues = tuple(issues)
    lines = _partial_search_lines(assessment, data_gaps, wording)
    if not patient_provided and any(i.diagnostics.startswith(_AGE_UNKNOWN) for i in issues):
        lines.append(str(wording["demographics_line"]))
    lines += _result_lines(issues, assessment, bundle, grouping or LabTestGrouping(), wording)
    lines += [_ehr_line(note, wording) for note in notes if note.kind == "ehr"]
    return tuple(dict.fromkeys(lines))[: int(wording["clinician_limit"])]
