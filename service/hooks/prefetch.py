"""Turns a service call's prefetch (plus whatever must be fetched) into one Bundle for the core.

The three states of a prefetch key mean different things and are kept apart: a key with data is
used; a key present with null means the client knows there is no data, so nothing is fetched; a
key that is absent, or holds an OperationOutcome, is missing and is read from fhirServer. Data
that cannot be had stops the call with 412: assessing without it would present "unknown" as
"normal". A prefetched searchset that says it is incomplete (a `next` link, a `total` above its
entries, outcome entries) is completed from an allowlisted fhirServer, or kept and reported in the
card's data notes, never passed off as complete: a search that stays partial (no server to complete
it, a page that could not be read, the page cap reached, a total above what was sent) is also handed
to the core as a DataGap of the key's resource type, so the rules say "could not confirm" rather
than "missing" for what its other pages may hold.

Every remark about the gathering is a located DataNote: a key the client sent is named as such
("prefetch.labs.link", "prefetch.labs.total"); data the service read from fhirServer itself is
named by what it read (the search it ran, "Observation/o1"), never by a prefetch key the client
did not send.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..assessment_model import DataGap, InputIssue
from ..errors import DataUnavailableError, InputError
from .data_notes import DataNote
from .draft_orders import indexed_draft_resources, subject_patient_id
from .fhir_fetch import (PAGE_CAP_NOTE, FetchError, FetchLimitExceeded, FetchServerBusy, FhirFetcher,
                         indexed_match_entries, next_link, outcome_diagnostics, resource_type_of)
from .request_validation import HookCall

_TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z0-9_]+)\s*\}\}")


@dataclass(frozen=True, slots=True)
class GatheredData:
    """The collection Bundle handed to the core, remarks about how it was gathered, and where each entry came from.

    `entry_locations[i]` is (entry, resource) location in the caller's request of Bundle.entry[i]:
    "prefetch.labs.entry[0]" / "prefetch.labs.entry[0].resource", "prefetch.patient" for a single
    resource, "context.draftOrders.entry[2]" / "...resource". Data read from fhirServer is located by
    what was read: "Observation/o1" (its type and id), or, for a resource without id, the search and
    its place in the results ("Observation?patient=1 entry[3]").
    """

    bundle: dict[str, Any]
    notes: tuple[DataNote, ...] = field(default=())
    fetched_keys: tuple[str, ...] = field(default=())
    entry_locations: tuple[tuple[str, str], ...] = field(default=())
    patient_provided: bool = True
    data_gaps: tuple[DataGap, ...] = field(default=())  # searches read only in part, for the core
    # (location, resources sent by the client, resources read from fhirServer) per prefetch key and
    # for context.draftOrders: what a refusal of too much data names.
    sources: tuple[tuple[str, int, int], ...] = field(default=())


# A resource gathered for the core, with its (entry, resource) location in the caller's request.
Located = tuple[dict[str, Any], str, str]

_PATIENT_ELEMENTS = json.loads(Path(__file__).with_name("patient_elements.json").read_text(encoding="utf-8"))
_ELEMENT_OF_TYPE = {resource_type: element for element in ("subject", "patient")
                    for resource_type in _PATIENT_ELEMENTS[element]}


def render_template(template: str, context: Mapping[str, Any]) -> str | None:
    """Fill `{{context.x}}` tokens; None when a token names a context field the call lacks."""
    missing = False

    def replace(match: re.Match[str]) -> str:
        """The context value for one token; an absent or empty one marks the template as unfillable."""
        nonlocal missing
        value = context.get(match.group(1))
        if not isinstance(value, str) or not value:
            missing = True
            return ""
        return value

    rendered = _TOKEN.sub(replace, template)
    return None if missing or "{{" in rendered else rendered


class _PatientMismatch(Exception):
    """A resource that is not, or names another patient than, the context patient, at `location`.

    The ids are never put in text.
    """

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def _foreign_element(resource: Mapping[str, Any], patient_id: str) -> str | None:
    """The element that ties `resource` to another patient than `patient_id` ("id", "subject", "patient"), else None.

    A subject that cannot be read as the context patient (a Group, an identifier only, a urn) counts
    as another patient's, as for draft orders: a card built on someone else's data is worse than none.
    """
    if resource.get("resourceType") == "Patient":
        return "id" if resource.get("id") not in (None, patient_id) else None
    own = f"Patient/{patient_id}"
    for element in ("subject", "patient"):
        value = resource.get(element)
        if value is None or (type(value) is dict and value.get("reference") == own):
            continue  # the usual form, "Patient/<id>": nothing to parse
        if subject_patient_id(value) != patient_id:
            return element
    return None


def _as_context_patients(resource: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """A Patient without id, or a resource without subject, is the context patient's: say so explicitly.

    A subject naming the context patient in another form (an absolute URL, the urn of its id) is
    written as "Patient/<id>", the form the core links on. Call after `_foreign_element`.
    """
    if resource.get("resourceType") == "Patient":
        if resource.get("id") is None:
            return dict(resource, id=patient_id)
        return resource
    reference = {"reference": f"Patient/{patient_id}"}
    present = [name for name in ("subject", "patient") if resource.get(name) is not None]
    if present:
        stated = resource[present[0]]
        if stated.get("reference") == reference["reference"]:
            return resource
        adopted = copy.copy(resource)
        adopted[present[0]] = dict(stated, **reference)
        return adopted
    element = _ELEMENT_OF_TYPE.get(str(resource.get("resourceType")))
    if element is None:
        return resource
    adopted = copy.copy(resource)
    adopted[element] = reference
    return adopted


def _check_owner(located: list[Located], patient_id: str) -> list[Located]:
    """The resources made explicitly the context patient's, or _PatientMismatch at the first foreign one."""
    checked = []
    for resource, entry_location, resource_location in located:
        element = _foreign_element(resource, patient_id)
        if element is not None:
            raise _PatientMismatch(f"{resource_location}.{element}")
        checked.append((_as_context_patients(resource, patient_id), entry_location, resource_location))
    return checked


def _in_bundle(key: str, indexed: list[tuple[int, dict[str, Any]]], first_index: int = 0) -> list[Located]:
    return [(resource, f"prefetch.{key}.entry[{first_index + index}]",
             f"prefetch.{key}.entry[{first_index + index}].resource") for index, resource in indexed]


def _as_fetched(located: list[Located], read: str) -> list[Located]:
    """The resources located by what the service read from fhirServer: "Observation/o1" when the
    resource has a type and id, else `read` (the search) and the resource's place among its results.
    (Checked for their owner first, under their key: a refusal never names another patient's ids.)"""
    relocated = []
    for index, (resource, _, _) in enumerate(located):
        resource_type, resource_id = resource.get("resourceType"), resource.get("id")
        if isinstance(resource_type, str) and isinstance(resource_id, str) and resource_id:
            where = f"{resource_type}/{resource_id}"
        else:
            where = f"{read} entry[{index}]"
        relocated.append((resource, where, where))
    return relocated


def _fetch_notes(texts: tuple[str, ...], location: str) -> list[DataNote]:
    """Remarks of a read from fhirServer: the page cap (a search read in part) or the server's own notes."""
    cap = PAGE_CAP_NOTE.split("{", 1)[0]
    return [DataNote("warning", text, location, "partial" if text.startswith(cap) else "ehr") for text in texts]


def _gap(key: str, template: str, call: HookCall) -> DataGap:
    """The key's search (its resource type, from the service's prefetch template) read only in part."""
    return DataGap(resource_type_of(template), location=f"prefetch.{key}", patient_id=call.patient_id)


def _prefetched(key: str, template: str, value: Mapping[str, Any], call: HookCall, fetcher: FhirFetcher,
                notes: list[DataNote], gaps: list[DataGap]) -> list[Located]:
    """The resources the client prefetched, completed or annotated when the searchset says it is partial."""
    if value.get("resourceType") != "Bundle":
        return _check_owner_or_400([(dict(value), f"prefetch.{key}", f"prefetch.{key}")], call.patient_id)
    entries = value.get("entry") or []
    # Shapes were checked in request_validation: every entry holds a resource. Every entry is checked
    # for its owner (an included resource of another patient is refused too), once; the matches are
    # then taken from the checked ones by their index.
    checked = _check_owner_or_400(_in_bundle(key, list(enumerate(e["resource"] for e in entries))), call.patient_id)
    what = f"prefetch '{key}'"
    located = [checked[index] for index, _ in indexed_match_entries(value, what)]
    notes.extend(DataNote("warning", f"{what}: the EHR noted: {text}", f"prefetch.{key}", "ehr")
                 for text in outcome_diagnostics(value))
    if next_link(value) is not None:
        further, complete = _follow_prefetch_pages(key, resource_type_of(template), value, call, fetcher, notes)
        located += further
        if not complete:
            gaps.append(_gap(key, template, call))
    else:
        total = value.get("total")
        if isinstance(total, int) and not isinstance(total, bool) and total > len(located):
            notes.append(DataNote("warning", f"{what} holds {len(located)} of the {total} matching resources the EHR "
                                  "reported; the others were not sent and were not considered",
                                  f"prefetch.{key}.total", "partial"))
            gaps.append(_gap(key, template, call))
    return located


def _follow_prefetch_pages(key: str, resource_type: str, value: Mapping[str, Any], call: HookCall,
                           fetcher: FhirFetcher, notes: list[DataNote]) -> tuple[list[Located], bool]:
    """Later pages of a prefetched searchset, read with the same allowlist, paging cap and checks as the
    fallback, and whether the search was read to its end."""
    what = f"prefetch '{key}'"
    link = f"prefetch.{key}.link"  # the next link the client sent, from which the service read on
    if not call.fhir_server or not fetcher.may_contact(call.fhir_server):
        notes.append(DataNote("warning", f"{what} is only the first page of its search (it has a next link), and the "
                              "rest could not be read because no allowlisted fhirServer was given; later pages were "
                              "not considered", link, "partial"))
        return [], False
    try:
        result = fetcher.read_further_pages(call.fhir_server, value, call.access_token, resource_type, pages_read=1)
    except FetchLimitExceeded as error:
        raise _limit_412(key, error) from None
    except FetchServerBusy as error:
        raise DataUnavailableError([_busy_issue(key, error)], status=412) from None
    except FetchError as error:
        notes.append(DataNote("warning", f"{what} is only the first page of its search; the rest could not be read "
                              f"({error}) and was not considered", link, "partial"))
        return [], False
    first_page = len(value.get("entry") or [])
    try:
        found = _check_owner(_in_bundle(key, list(enumerate(result.resources)), first_page), call.patient_id)
    except _PatientMismatch as mismatch:
        raise _foreign_patient_412(key, mismatch.location) from None
    notes.extend(_fetch_notes(result.notes, link))
    return _as_fetched(found, f"the pages after {link}"), not result.truncated


def _check_owner_or_400(located: list[Located], patient_id: str) -> list[Located]:
    try:
        return _check_owner(located, patient_id)
    except _PatientMismatch as mismatch:
        raise InputError.single("the prefetched resource is not, or does not belong to, the patient in "
                                "context.patientId", location=mismatch.location, status=400) from None


def _foreign_patient_412(key: str, location: str) -> DataUnavailableError:
    return DataUnavailableError([InputIssue(
        "error", "conflict",
        f"the FHIR server returned data of a patient other than the one in context.patientId for prefetch "
        f"{key!r}; it was not used", location)], status=412)


def _busy_issue(key: str, error: FetchServerBusy) -> InputIssue:
    """A read refused because the server already has as many reads waiting as allowed: try again later."""
    return InputIssue("error", "throttled", f"prefetch {key!r}: {error}", f"prefetch.{key}")


def _limit_412(key: str, error: FetchLimitExceeded) -> DataUnavailableError:
    return DataUnavailableError([InputIssue("error", "too-costly", f"prefetch {key!r}: {error}",
                                            f"prefetch.{key}")], status=412)


def gather_bundle(service: Mapping[str, Any], call: HookCall, fetcher: FhirFetcher) -> GatheredData:
    """The Bundle for the core, or DataUnavailableError (412) naming each key that could not be had."""
    provided = call.prefetch or {}
    located: list[Located] = []
    unavailable: list[InputIssue] = []
    notes: list[DataNote] = []
    gaps: list[DataGap] = []
    fetched: list[str] = []
    sources: list[tuple[str, int, int]] = []
    fetcher = fetcher.for_one_call()  # one total deadline for every read of this call
    for key, template in service.get("prefetch", {}).items():
        value = provided.get(key, ...)
        if value is None:
            continue  # the client says there is no data: not fetched
        if value is not ... and value.get("resourceType") != "OperationOutcome":
            from_key = _prefetched(key, template, value, call, fetcher, notes, gaps)
            sent = sum(entry_location.startswith("prefetch.") for _, entry_location, _ in from_key)
            sources.append((f"prefetch.{key}", sent, len(from_key) - sent))
            located.extend(from_key)
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
        except FetchLimitExceeded as error:
            unavailable.append(_limit_412(key, error).issues[0])
            continue
        except FetchServerBusy as error:
            unavailable.append(_busy_issue(key, error))
            continue
        except FetchError as error:
            unavailable.append(InputIssue("error", "transient", f"prefetch {key!r} is missing and {error}",
                                          f"prefetch.{key}"))
            continue
        if "?" in query:
            found = _in_bundle(key, list(enumerate(result.resources)))
        else:
            found = [(resource, f"prefetch.{key}", f"prefetch.{key}") for resource in result.resources]
        try:
            located.extend(_as_fetched(_check_owner(found, call.patient_id), query))
        except _PatientMismatch as mismatch:
            raise _foreign_patient_412(key, mismatch.location) from None
        sources.append((f"prefetch.{key}", 0, len(found)))
        notes.extend(_fetch_notes(result.notes, query))
        if result.truncated:
            gaps.append(_gap(key, template, call))
        fetched.append(key)
    if unavailable:
        raise DataUnavailableError(unavailable, status=412)
    drafts = [(resource, f"context.draftOrders.entry[{index}]", f"context.draftOrders.entry[{index}].resource")
              for index, resource in indexed_draft_resources(call.context.get("draftOrders"), call.patient_id)]
    if drafts:
        sources.append(("context.draftOrders", len(drafts), 0))
    # Draft orders first: the EHR's in-progress version of an order wins over a stored copy.
    bundle, entry_locations = _collection(drafts + located, call.fhir_server)
    patient_provided = any(entry["resource"].get("resourceType") == "Patient" for entry in bundle["entry"])
    return GatheredData(bundle, tuple(notes), tuple(fetched), entry_locations, patient_provided,
                        tuple(dict.fromkeys(gaps)), tuple(sources))


def _collection(located: list[Located], fhir_server: str | None) -> tuple[dict[str, Any], tuple[tuple[str, str], ...]]:
    """A collection Bundle without duplicates (fullUrl only when the resource's server is known), and its locations."""
    entries: list[dict[str, Any]] = []
    locations: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for resource, entry_location, resource_location in located:
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
        locations.append((entry_location, resource_location))
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}, tuple(locations)
