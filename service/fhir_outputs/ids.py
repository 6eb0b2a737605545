"""Deterministic resource ids, so the same assessment always yields the same Bundle.

An id is a UUID v5 over the patient id, the rule library name and version, the evaluation
time, the resource kind and an item key (e.g. the LOINC code of a ServiceRequest). Re-running
the same input gives identical ids (golden files compare); a new evaluation time gives new ids.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Iterable

from ..assessment_model import PatientAssessment

ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://calcinosis-cds.org/fhir/output-ids")
_SEPARATOR = "\x1f"  # cannot occur in ids, codes or ISO timestamps, so parts never run together


def fhir_instant(moment: datetime) -> str:
    """ISO 8601 in UTC with a trailing Z. A naive datetime is taken to be UTC already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    text = moment.replace(tzinfo=None).isoformat()
    return f"{text}Z"


def stable_id(*parts: str) -> str:
    """UUID v5 over the parts: the same parts always give the same id."""
    return str(uuid.uuid5(ID_NAMESPACE, _SEPARATOR.join(parts)))


def resource_id(patient: PatientAssessment, kind: str, key: str = "") -> str:
    """Id of one output resource of `patient`; `key` tells apart several of the same kind."""
    return stable_id(patient.patient_id, patient.library, patient.library_version,
                     fhir_instant(patient.assessed_at), kind, key)


def urn(resource_id_value: str) -> str:
    """The urn:uuid: form used in Bundle.entry.fullUrl and references between entries."""
    return f"urn:uuid:{resource_id_value}"


def content_id(kind: str, lines: Iterable[str]) -> str:
    """Id derived from content alone, for resources not tied to one patient."""
    return stable_id("content", kind, *lines)
