"""Deterministic resource ids, so the same assessment always yields the same Bundle.

An id is a UUID v5 over the patient id, the rule library name and version, the evaluation
time, the resource kind and an item key (e.g. the LOINC code of a ServiceRequest). Re-running
the same input gives identical ids (golden files compare); a new evaluation time gives new ids.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone
from functools import lru_cache
from typing import Iterable

from ..assessment_model import PatientAssessment

ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://calcinosis-cds.org/fhir/output-ids")
_NAMESPACE_BYTES = ID_NAMESPACE.bytes
_SEPARATOR = "\x1f"  # cannot occur in ids, codes or ISO timestamps, so parts never run together


def fhir_instant(moment: datetime) -> str:
    """ISO 8601 in UTC with a trailing Z. A naive datetime is taken to be UTC already."""
    if moment.__class__ is datetime and (moment.tzinfo is None or moment.tzinfo.__class__ is timezone):
        return _remembered_instant(moment)
    return _instant(moment)


def _instant(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    text = moment.replace(tzinfo=None).isoformat()
    return f"{text}Z"


# Every output of an assessment is stamped with its one evaluation time, about ten times a patient, so
# the text is remembered; only for plain datetimes, naive or at a fixed offset, where equal keys always
# name one instant and so give one text (a subclass may print otherwise; a zone with daylight saving
# compares two readings of an hour that occurs twice as equal).
_remembered_instant = lru_cache(maxsize=256)(_instant)


def stable_id(*parts: str) -> str:
    """UUID v5 over the parts: the same parts always give the same id.

    Written out as `str(uuid.uuid5(ID_NAMESPACE, name))` is, from the same SHA-1 digest, without the
    UUID object in between (a patient's outputs take a dozen ids)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + _SEPARATOR.join(parts).encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


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
