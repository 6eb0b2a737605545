"""Which patient a FHIR resource belongs to, read from the resource alone.

A Bulk Data export is one file per type; to assess a patient its resources must first be brought
together, and this is the key they are grouped by: a Patient's own id, otherwise the id of the
Patient its `subject`, `patient` or `beneficiary` refers to. A reference to anything else (a Group
subject, a contained resource) gives no key: the resource is then reported, never silently lost.
"""

from __future__ import annotations

import re
from typing import Any

# The elements that name the patient a resource is about, in the order they are tried.
PATIENT_ELEMENTS = ("subject", "patient", "beneficiary")

# An R4 id: what a key may be (it also becomes part of file names and CSV cells).
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_URN_UUID = "urn:uuid:"


def patient_key_of(resource: dict[str, Any]) -> str | None:
    """The id of the patient `resource` belongs to, or None when it names none (or not validly)."""
    if not isinstance(resource, dict):
        return None
    if resource.get("resourceType") == "Patient":
        own = resource.get("id")
        return own if isinstance(own, str) and _ID.match(own) else None
    for element in PATIENT_ELEMENTS:
        value = resource.get(element)
        if isinstance(value, dict):
            return patient_id_of_reference(value.get("reference"))
    return None


def patient_id_of_reference(reference: object) -> str | None:
    """'Patient/123', 'https://host/fhir/Patient/123' and 'urn:uuid:...' -> the id; anything else -> None."""
    if not isinstance(reference, str):
        return None
    if reference.startswith("Patient/") and reference.count("/") == 1:  # the usual `Patient/<id>`, told at once
        candidate = reference[8:]
        return candidate if _ID.match(candidate) else None
    if reference.startswith(_URN_UUID):
        candidate = reference[len(_URN_UUID):]
    else:
        path = reference.split("/_history/", 1)[0]
        parts = path.rsplit("/", 2)
        if len(parts) < 2 or parts[-2] != "Patient":
            return None
        candidate = parts[-1]
    return candidate if _ID.match(candidate) else None
