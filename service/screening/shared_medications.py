"""The export's shared Medication resources, added to each patient that references them.

A Bulk Data export (Epic, Cerner) writes `Medication.ndjson`: a Medication belongs to no patient,
and a patient's MedicationRequest, MedicationStatement or MedicationAdministration points at one
with `medicationReference.reference` = `Medication/<id>` (or an absolute URL ending so). Grouped by
patient alone, the order would lose its drug: the pipeline would warn that the Medication "is not
in the bundle" and the rules would miss an iatrogenic cause. Both engines therefore keep the
Medications that name no patient (they are few and small: one per drug, not per patient) and add to
a patient's resources, once each, those its medication resources reference, so `screen_patient`
resolves them as `$assess` does for a Bundle holding the patient's resources and the Medication.
A reference to a Medication the export lacks is left alone: the pipeline still warns about it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from ..pipeline.ingest import MEDICATION_USERS

# A shard line: (origin, fullUrl, resource JSON).
Line = tuple[str, str | None, bytes]


class SharedMedications:
    """The Medications of no patient by id, each with its (origin, fullUrl, JSON) lines in the order read
    (two Medications with one id are both added: the pipeline then reports the ambiguity, as `$assess` would)."""

    def __init__(self) -> None:
        self.by_id: dict[str, list[Line]] = {}

    def __bool__(self) -> bool:
        return bool(self.by_id)

    def add(self, resource: dict[str, Any], origin: str, full_url: str | None, raw: bytes) -> None:
        resource_id = resource.get("id")
        if isinstance(resource_id, str) and resource_id:
            self.by_id.setdefault(resource_id, []).append((origin, full_url or None, raw))

    def referenced_by(self, resources: Iterable[dict[str, Any]]) -> list[Line]:
        """The lines of the shared Medications that `resources` reference, once each, in the order referenced."""
        if not self.by_id:
            return []
        added: list[Line] = []
        seen: set[str] = set()
        for resource in resources:
            medication_id = referenced_medication_id(resource)
            if medication_id is None or medication_id in seen:
                continue
            seen.add(medication_id)
            added.extend(self.by_id.get(medication_id, ()))
        return added

    def to_rows(self) -> list[Line]:
        return [line for lines in self.by_id.values() for line in lines]

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[Any]]) -> "SharedMedications":
        """From (origin, fullUrl, JSON bytes) rows in the order read; each JSON is decoded once for its id."""
        import orjson

        shared = cls()
        for origin, full_url, raw in rows:
            shared.add(orjson.loads(raw), origin, full_url, raw)
        return shared


def referenced_medication_id(resource: Any) -> str | None:
    """The id of the Medication a medication resource references as `Medication/<id>` (relative or an
    absolute URL ending so); None for anything else (a contained `#id`, a code, no reference)."""
    if not isinstance(resource, dict) or resource.get("resourceType") not in MEDICATION_USERS:
        return None
    medication = resource.get("medicationReference")
    reference = medication.get("reference") if isinstance(medication, dict) else None
    if not isinstance(reference, str) or reference.startswith(("#", "urn:")):
        return None
    parts = reference.split("/_history/", 1)[0].rstrip("/").rsplit("/", 2)
    if len(parts) < 2 or parts[-2] != "Medication" or not parts[-1]:
        return None
    return parts[-1]


# ---------------------------------------------------------------- the local engine's files


def write_lines(path: Path, lines: Iterable[Line]) -> None:
    """`origin TAB fullUrl TAB JSON` a line (the JSON last: it is one line, and tabs in it are harmless)."""
    with open(path, "wb") as handle:
        for origin, full_url, raw in lines:
            handle.write(b"%s\t%s\t%s\n" % (origin.encode(), (full_url or "").encode(), raw))


def read_files(folder: Path, names: Iterable[str]) -> SharedMedications:
    """The shared Medications written by the partition (`names` in the order read)."""
    rows = []
    for name in names:
        for line in (Path(folder) / name).read_bytes().split(b"\n"):
            if line:
                origin, full_url, raw = line.split(b"\t", 2)
                rows.append((origin.decode(), full_url.decode() or None, raw))
    return SharedMedications.from_rows(rows)
