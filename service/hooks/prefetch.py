"""Turns a service call's prefetch (plus whatever must be fetched) into one Bundle for the core.

The three states of a prefetch key mean different things and are kept apart: a key with data is
used; a key present with null means the client knows there is no data, so nothing is fetched; a
key that is absent, or holds an OperationOutcome, is missing and is read from fhirServer. Data
that cannot be had stops the call with 412: assessing without it would present "unknown" as
"normal". A prefetched searchset that says it is incomplete (a `next` link, a `total` above its
entries, outcome entries) is completed from an allowlisted fhirServer, or kept and reported in the
card's data notes, never passed off as complete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..assessment_model import InputIssue
from ..errors import DataUnavailableError, InputError
from .draft_orders import draft_resources
from .fhir_fetch import FetchError, FhirFetcher, match_entries, next_link, outcome_diagnostics, resource_type_of
from .request_validation import HookCall

_TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z0-9_]+)\s*\}\}")


@dataclass(frozen=True, slots=True)
class GatheredData:
    """The collection Bundle handed to the core, and remarks about how it was gathered."""

    bundle: dict[str, Any]
    notes: tuple[str, ...] = field(default=())
    fetched_keys: tuple[str, ...] = field(default=())


def render_template(template: str, context: Mapping[str, Any]) -> str | None:
    """Fill `{{context.x}}` tokens; None when a token names a context field the call lacks."""
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        value = context.get(match.group(1))
        if not isinstance(value, str) or not value:
            missing = True
            return ""
        return value

    rendered = _TOKEN.sub(replace, template)
    return None if missing or "{{" in rendered else rendered


class _PatientMismatch(Exception):
    """A Patient resource that is not the context patient, at `location` (the ids are never put in text)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def _check_patient(resources: list[dict[str, Any]], patient_id: str, location: str, *, in_bundle: bool) -> None:
    for index, resource in enumerate(resources):
        if resource.get("resourceType") == "Patient" and resource.get("id") not in (None, patient_id):
            where = f"{location}.entry[{index}].resource.id" if in_bundle else f"{location}.id"
            raise _PatientMismatch(where)


def _prefetched(key: str, template: str, value: Mapping[str, Any], call: HookCall, fetcher: FhirFetcher,
                notes: list[str]) -> list[dict[str, Any]]:
    """The resources the client prefetched, completed or annotated when the searchset says it is partial."""
    if value.get("resourceType") != "Bundle":
        resources = [dict(value)]
        _check_patient_or_400(resources, call.patient_id, f"prefetch.{key}", in_bundle=False)
        return resources
    entries = value.get("entry") or []
    all_resources = [e["resource"] for e in entries]  # shapes were checked in request_validation
    _check_patient_or_400(all_resources, call.patient_id, f"prefetch.{key}", in_bundle=True)
    what = f"prefetch '{key}'"
    resources = match_entries(value, what)
    notes.extend(f"{what}: the EHR noted: {text}" for text in outcome_diagnostics(value))
    if next_link(value) is not None:
        resources += _follow_prefetch_pages(key, resource_type_of(template), value, call, fetcher, notes)
    else:
        total = value.get("total")
        if isinstance(total, int) and not isinstance(total, bool) and total > len(resources):
            notes.append(f"{what} holds {len(resources)} of the {total} matching resources the EHR reported; "
                         "the others were not sent and were not considered")
    return resources


def _follow_prefetch_pages(key: str, resource_type: str, value: Mapping[str, Any], call: HookCall,
                           fetcher: FhirFetcher, notes: list[str]) -> list[dict[str, Any]]:
    """Later pages of a prefetched searchset, read with the same allowlist, paging cap and checks as the fallback."""
    what = f"prefetch '{key}'"
    if not call.fhir_server or not fetcher.may_contact(call.fhir_server):
        notes.append(f"{what} is only the first page of its search (it has a next link), and the rest could not "
                     "be read because no allowlisted fhirServer was given; later pages were not considered")
        return []
    try:
        result = fetcher.read_further_pages(call.fhir_server, value, call.access_token, resource_type, pages_read=1)
    except FetchError as error:
        notes.append(f"{what} is only the first page of its search; the rest could not be read ({error}) "
                     "and was not considered")
        return []
    found = list(result.resources)
    try:
        _check_patient(found, call.patient_id, f"prefetch.{key}", in_bundle=True)
    except _PatientMismatch as mismatch:
        raise _foreign_patient_412(key, mismatch.location) from None
    notes.extend(result.notes)
    return found


def _check_patient_or_400(resources: list[dict[str, Any]], patient_id: str, location: str, *, in_bundle: bool) -> None:
    try:
        _check_patient(resources, patient_id, location, in_bundle=in_bundle)
    except _PatientMismatch as mismatch:
        raise InputError.single("the prefetched Patient is not the patient in context.patientId",
                                location=mismatch.location, status=400) from None


def _foreign_patient_412(key: str, location: str) -> DataUnavailableError:
    return DataUnavailableError([InputIssue(
        "error", "conflict",
        f"the FHIR server returned a Patient other than the one in context.patientId for prefetch {key!r}; "
        "its data was not used", location)], status=412)


def gather_bundle(service: Mapping[str, Any], call: HookCall, fetcher: FhirFetcher) -> GatheredData:
    """The Bundle for the core, or DataUnavailableError (412) naming each key that could not be had."""
    provided = call.prefetch or {}
    resources: list[dict[str, Any]] = []
    unavailable: list[InputIssue] = []
    notes: list[str] = []
    fetched: list[str] = []
    for key, template in service.get("prefetch", {}).items():
        value = provided.get(key, ...)
        if value is None:
            continue  # the client says there is no data: not fetched
        if value is not ... and value.get("resourceType") != "OperationOutcome":
            resources.extend(_prefetched(key, template, value, call, fetcher, notes))
            continue
        query = render_template(template, call.context)
        if query is None:
            unavailable.append(InputIssue("error", "not-found",
                                          f"prefetch {key!r} is missing and its query needs context the call lacks",
                                          f"prefetch.{key}"))
            continue
        if not call.fhir_server:
            unavailable.append(InputIssue("error", "not-found",
                                          f"prefetch {key!r} is missing and no fhirServer was given to read it from",
                                          f"prefetch.{key}"))
            continue
        try:
            result = fetcher.fetch(call.fhir_server, query, call.access_token)
        except FetchError as error:
            unavailable.append(InputIssue("error", "transient", f"prefetch {key!r} is missing and {error}",
                                          f"prefetch.{key}"))
            continue
        found = list(result.resources)
        try:
            _check_patient(found, call.patient_id, f"prefetch.{key}", in_bundle="?" in query)
        except _PatientMismatch as mismatch:
            raise _foreign_patient_412(key, mismatch.location) from None
        resources.extend(found)
        notes.extend(result.notes)
        fetched.append(key)
    if unavailable:
        raise DataUnavailableError(unavailable, status=412)
    drafts = draft_resources(call.context.get("draftOrders"), call.patient_id)
    # Draft orders first: the EHR's in-progress version of an order wins over a stored copy.
    return GatheredData(_collection(drafts + resources, call.fhir_server), tuple(notes), tuple(fetched))


def _collection(resources: list[dict[str, Any]], fhir_server: str | None) -> dict[str, Any]:
    """A collection Bundle without duplicates; fullUrl only when the resource's server is known."""
    entries: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for resource in resources:
        resource_type, resource_id = resource.get("resourceType"), resource.get("id")
        if not isinstance(resource_type, str):
            continue  # never reached: request_validation and fhir_fetch refuse such entries
        if isinstance(resource_id, str) and resource_id:
            if (resource_type, resource_id) in seen:
                continue
            seen.add((resource_type, resource_id))
        entry: dict[str, Any] = {"resource": resource}
        if fhir_server and isinstance(resource_id, str) and resource_id:
            entry["fullUrl"] = f"{fhir_server}/{resource_type}/{resource_id}"
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
