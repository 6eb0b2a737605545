"""The orders in `context.draftOrders`: checked, tied to the patient in context, and read for test codes.

An EHR sends draft orders in the context of one patient, so an order with no subject is that
patient's; the core links orders to a patient through `subject`, so one is filled in (otherwise
an IV calcium or phosphate draft would lose its warning). An order naming another patient, or a
subject that cannot be read as the context patient, is refused with 400: a card built on another
patient's orders is worse than none.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Mapping

from ..assessment_model import InputIssue
from .bundle_checks import readable_entries, request_issue
from .order_codes import normalize_system

_BASE = "context.draftOrders"
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


_issue = request_issue


def _subject_patient_id(subject: Any) -> str | None:
    """The patient id a Reference names ('Patient/x', '.../Patient/x', '.../Patient/x/_history/1'), else None.

    'urn:uuid:x' gives 'x': exports such as Synthea's name the patient by the urn of its own id, so
    it matches the context patient only when context.patientId is that same uuid.
    """
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str):
        return None
    if reference.startswith("urn:uuid:"):
        return reference[len("urn:uuid:"):] or None
    parts = [part for part in reference.split("?")[0].split("/") if part]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
        return parts[-1]
    return None


def _check_codeable_concept(value: Any, where: str, issues: list[InputIssue]) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        issues.append(_issue("must be a CodeableConcept (a JSON object)", where))
        return
    codings = value.get("coding")
    if codings is None:
        return
    if not isinstance(codings, list):
        issues.append(_issue("coding must be an array of Codings", f"{where}.coding"))
        return
    for index, coding in enumerate(codings):
        if not isinstance(coding, dict):
            issues.append(_issue("each coding must be a JSON object", f"{where}.coding[{index}]"))
            continue
        for name in ("system", "code", "display"):
            if coding.get(name) is not None and not isinstance(coding[name], str):
                issues.append(_issue(f"coding.{name} must be a string", f"{where}.coding[{index}].{name}"))


def check_draft_orders(draft_orders: Any, patient_id: str | None, issues: list[InputIssue], *,
                       max_orders: int = 200) -> None:
    """Append an issue (with its location) for every draft order the service cannot read safely.

    More than `max_orders` entries is refused outright: one signing session holds a handful of
    orders, and every order costs assessment time and card text.
    """
    if not isinstance(draft_orders, dict):
        return  # absence and wrong type are reported with the other context fields
    if draft_orders.get("resourceType") != "Bundle":
        issues.append(_issue("context.draftOrders must be a FHIR Bundle", f"{_BASE}.resourceType"))
        return
    entries = draft_orders.get("entry")
    if isinstance(entries, list) and len(entries) > max_orders:
        issues.append(_issue(f"context.draftOrders holds {len(entries)} entries; at most {max_orders} are accepted "
                             "per call (CDS_MAX_DRAFT_ORDERS)", f"{_BASE}.entry", "too-costly"))
        return
    for where, _entry, resource in readable_entries(draft_orders, _BASE, issues, noun="draft order entry"):
        subject = resource.get("subject")
        if subject is not None and patient_id is not None and _subject_patient_id(subject) != patient_id:
            issues.append(_issue("the draft order's subject is not the patient in context.patientId; draft orders "
                                 "must belong to that patient", f"{where}.resource.subject"))
        for field_name in ("code", "medicationCodeableConcept"):
            _check_codeable_concept(resource.get(field_name), f"{where}.resource.{field_name}", issues)


def _logical_id(entry: Mapping[str, Any], resource: Mapping[str, Any]) -> str | None:
    """The resource id, or the one its fullUrl gives (urn:uuid:<id> or .../<Type>/<id>)."""
    if isinstance(resource.get("id"), str) and resource["id"]:
        return resource["id"]
    full_url = entry.get("fullUrl")
    if not isinstance(full_url, str):
        return None
    candidate = None
    if full_url.startswith("urn:uuid:"):
        candidate = full_url[len("urn:uuid:"):]
    else:
        parts = [part for part in full_url.split("/") if part]
        if len(parts) >= 2 and parts[-2] == resource.get("resourceType"):
            candidate = parts[-1]
    return candidate if candidate and _FHIR_ID.fullmatch(candidate) else None


def subject_patient_id(subject: Any) -> str | None:
    """The patient id a Reference names, else None (shared with the prefetch checks)."""
    return _subject_patient_id(subject)


def draft_resources(draft_orders: Any, patient_id: str) -> list[dict[str, Any]]:
    """Copies of the context patient's draft orders, each with `subject` and (when known) `id` set.

    Call after `check_draft_orders`; orders naming another patient are left out all the same.
    """
    return [resource for _index, resource in indexed_draft_resources(draft_orders, patient_id)]


def indexed_draft_resources(draft_orders: Any, patient_id: str) -> list[tuple[int, dict[str, Any]]]:
    """`draft_resources` with each order's index in context.draftOrders.entry."""
    entries = draft_orders.get("entry") if isinstance(draft_orders, dict) else None
    resources = []
    for index, entry in enumerate(entries if isinstance(entries, list) else ()):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            continue
        subject = resource.get("subject")
        if subject is not None and _subject_patient_id(subject) != patient_id:
            continue
        draft = copy.deepcopy(resource)
        draft["subject"] = {"reference": f"Patient/{patient_id}"}
        if isinstance(subject, dict) and isinstance(subject.get("display"), str):
            draft["subject"]["display"] = subject["display"]
        logical_id = _logical_id(entry, resource)
        if logical_id is not None:
            draft["id"] = logical_id
        resources.append((index, draft))
    return resources


def reference_key(reference: str) -> str:
    """'MedicationRequest/1' for 'MedicationRequest/1', 'https://x/fhir/MedicationRequest/1' or '.../_history/2'."""
    parts = [p for p in reference.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference


def check_selections(selections: Any, draft_orders: Any, patient_id: str, issues: list[InputIssue]) -> None:
    """order-select: each selection must name one of the draft orders (else the alert could never match)."""
    if not isinstance(selections, list) or not isinstance(draft_orders, dict):
        return
    known = {f"{r['resourceType']}/{r['id']}" for r in draft_resources(draft_orders, patient_id)
             if isinstance(r.get("id"), str)}
    for index, selection in enumerate(selections):
        if isinstance(selection, str) and "/" in selection and reference_key(selection) not in known:
            issues.append(_issue("the selection names no order in context.draftOrders",
                                 f"context.selections[{index}]", "not-found"))


def draft_test_codes(draft_orders: Any, patient_id: str) -> frozenset[tuple[str, str]]:
    """(system, code) of every ServiceRequest the context patient has in draftOrders (system normalised)."""
    codes: set[tuple[str, str]] = set()
    for resource in draft_resources(draft_orders, patient_id):
        if resource.get("resourceType") != "ServiceRequest":
            continue
        concept = resource.get("code")
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else ():
            if not isinstance(coding, dict):
                continue
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str) and system and code:
                codes.add((normalize_system(system), code.strip()))
    return frozenset(codes)
