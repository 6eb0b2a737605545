"""Turns a service call's prefetch (plus whatever must be fetched) into one Bundle for the core.

The three states of a prefetch key mean different things and are kept apart: a key with data is
used; a key present with null means the client knows there is no data, so nothing is fetched; a
key that is absent, or holds an OperationOutcome, is missing and is read from fhirServer. Data
that cannot be had stops the call with 412: assessing without it would present "unknown" as
"normal".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..assessment_model import InputIssue
from ..errors import DataUnavailableError, InputError
from .fhir_fetch import FetchError, FhirFetcher
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


def _resources_of(value: Mapping[str, Any]) -> list[dict[str, Any]]:
    if value.get("resourceType") != "Bundle":
        return [dict(value)]
    resources = []
    for entry in value.get("entry") or ():
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") == "OperationOutcome":
            continue
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue
        resources.append(resource)
    return resources


def _check_patient(resources: list[dict[str, Any]], patient_id: str, location: str) -> None:
    for resource in resources:
        if resource.get("resourceType") == "Patient" and resource.get("id") not in (None, patient_id):
            raise InputError.single(
                f"the Patient given has id {resource.get('id')!r} but context.patientId is {patient_id!r}",
                location=f"{location}.id", status=400)


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
            found = _resources_of(value)
            _check_patient(found, call.patient_id, f"prefetch.{key}")
            resources.extend(found)
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
        _check_patient(list(result.resources), call.patient_id, f"fhirServer {query}")
        resources.extend(result.resources)
        notes.extend(result.notes)
        fetched.append(key)
    if unavailable:
        raise DataUnavailableError(unavailable, status=412)
    draft_orders = call.context.get("draftOrders")
    drafts = _resources_of(draft_orders) if isinstance(draft_orders, dict) else []
    # Draft orders first: the EHR's in-progress version of an order wins over a stored copy.
    return GatheredData(_collection(drafts + resources, call.fhir_server), tuple(notes), tuple(fetched))


def _collection(resources: list[dict[str, Any]], fhir_server: str | None) -> dict[str, Any]:
    """A collection Bundle without duplicates; fullUrl only when the resource's server is known."""
    entries: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for resource in resources:
        resource_type, resource_id = resource.get("resourceType"), resource.get("id")
        if isinstance(resource_id, str) and resource_id:
            if (resource_type, resource_id) in seen:
                continue
            seen.add((resource_type, resource_id))
        entry: dict[str, Any] = {"resource": resource}
        if fhir_server and isinstance(resource_id, str) and resource_id:
            entry["fullUrl"] = f"{fhir_server}/{resource_type}/{resource_id}"
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
