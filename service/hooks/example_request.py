"""A CDS Hooks request built from a FHIR Bundle, so the same data can be tried as a hook call.

Integration testers hold Bundles; an EHR sends a hook request with the patient in `context` and
the data as prefetched searches. This builds that request: `Patient` as the `patient` prefetch,
Observations as the `labs` searchset, Conditions, MedicationRequests and Procedures likewise, and,
for order-select and order-sign, the chosen draft orders (`try_draft_orders.json`) for the patient.
No `fhirServer` is named, so the service never reads anything else. Resources no prefetch key
carries (MedicationAdministration, ...) are counted, so the page can say they were left out.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import InputError

DRAFT_ORDERS_FILE = Path(__file__).with_name("try_draft_orders.json")
PREFETCH_KEYS: dict[str, str] = {"Observation": "labs", "Condition": "conditions",
                                 "MedicationRequest": "medications", "Procedure": "procedures"}
HOOKS = ("patient-view", "order-select", "order-sign")


@lru_cache(maxsize=1)
def draft_order_choices() -> tuple[Mapping[str, Any], ...]:
    """The draft orders a request can carry: id, label and the resource without subject."""
    return tuple(json.loads(DRAFT_ORDERS_FILE.read_text(encoding="utf-8"))["orders"])


@dataclass(frozen=True, slots=True)
class ExampleRequest:
    """The request body and what of the Bundle it could not carry."""

    body: dict[str, Any]
    not_carried: dict[str, int]  # resource type -> count


def build_hook_request(bundle: object, hook: str, *, patient: str | None = None,
                       draft_orders: Sequence[str] = ()) -> ExampleRequest:
    """The CDS Hooks request for `hook` carrying `bundle`'s data of one patient.

    `patient`: the patient's id or reference when the Bundle holds several (default: the first
    Patient). Raises InputError (422) for a Bundle without a usable Patient or an unknown hook.
    """
    if hook not in HOOKS:
        raise InputError.single(f"unknown hook {hook!r}: one of {', '.join(HOOKS)}", location="hook",
                                code="not-supported", status=422)
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    if not isinstance(entries, list):
        raise InputError.single("expected a FHIR Bundle with an entry array", location="Bundle.entry",
                                code="structure", status=422)
    resources = [(entry.get("fullUrl"), entry.get("resource")) for entry in entries
                 if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)]
    patient_id, patient_resource, patient_refs = _patient(resources, patient)
    prefetch: dict[str, Any] = {"patient": patient_resource}
    searches: dict[str, list[dict[str, Any]]] = {key: [] for key in PREFETCH_KEYS.values()}
    not_carried: dict[str, int] = {}
    for full_url, resource in resources:
        kind = resource.get("resourceType")
        if kind == "Patient":
            continue
        if not _belongs_to(resource, patient_refs):
            continue
        key = PREFETCH_KEYS.get(kind) if isinstance(kind, str) else None
        if key is None:
            not_carried[str(kind)] = not_carried.get(str(kind), 0) + 1
            continue
        entry: dict[str, Any] = {"resource": resource, "search": {"mode": "match"}}
        if isinstance(full_url, str):
            entry["fullUrl"] = full_url
        searches[key].append(entry)
    for key, found in searches.items():
        prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(found), "entry": found}
    context: dict[str, Any] = {"userId": "Practitioner/ui-tester", "patientId": patient_id}
    if hook != "patient-view":
        chosen = _draft_orders(draft_orders, patient_id)
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": order} for order in chosen]}
        if hook == "order-select":
            context["selections"] = [f"{order['resourceType']}/{order['id']}" for order in chosen[:1]]
    body = {"hookInstance": str(uuid.uuid4()), "hook": hook, "context": context, "prefetch": prefetch}
    return ExampleRequest(body, not_carried)


def _patient(resources: Sequence[tuple[Any, dict[str, Any]]], wanted: str | None
             ) -> tuple[str, dict[str, Any], set[str]]:
    """(context.patientId, the Patient resource, every reference that names it)."""
    for position, (full_url, resource) in enumerate(resources):
        if resource.get("resourceType") != "Patient":
            continue
        logical_id = resource.get("id") if isinstance(resource.get("id"), str) else None
        urn_id = full_url.rsplit(":", 1)[-1] if isinstance(full_url, str) and full_url.startswith("urn:uuid:") else None
        patient_id = logical_id or urn_id or f"ui-patient-{position}"
        references = {f"Patient/{patient_id}", patient_id}
        if isinstance(full_url, str):
            references.add(full_url)
            parts = full_url.rstrip("/").rsplit("/", 2)
            if len(parts) == 3 and parts[1] == "Patient":
                references.add(f"Patient/{parts[2]}")
        if wanted is None or wanted in references:
            return patient_id, resource, references
    what = f"no Patient {wanted!r}" if wanted else "no Patient resource"
    raise InputError.single(f"the Bundle holds {what}: a CDS Hooks request needs the patient in context",
                            location="Bundle.entry", code="required", status=422)


def _belongs_to(resource: Mapping[str, Any], patient_refs: set[str]) -> bool:
    """A resource without subject goes with the patient (as the service reads a prefetch)."""
    for element in ("subject", "patient"):
        value = resource.get(element)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            return value["reference"] in patient_refs
    return True


def _draft_orders(chosen: Sequence[str], patient_id: str) -> list[dict[str, Any]]:
    choices = {choice["id"]: choice for choice in draft_order_choices()}
    unknown = [name for name in chosen if name not in choices]
    if unknown:
        raise InputError.single(f"unknown draft order {unknown[0]!r}: one of {', '.join(choices)}",
                                location="draftOrders", code="not-supported", status=422)
    names = list(chosen) or [next(iter(choices))]
    orders = []
    for name in names:
        order = json.loads(json.dumps(choices[name]["resource"]))
        order["subject"] = {"reference": f"Patient/{patient_id}"}
        orders.append(order)
    return orders
