"""The export's shared Medication resources, added to each patient that references them.

A Bulk Data export (Epic, Cerner) writes `Medication.ndjson`: a Medication belongs to no patient,
and a patient's MedicationRequest, MedicationStatement or MedicationAdministration points at one
with `medicationReference.reference` = `Medication/<id>` (or an absolute URL ending so; in a folder of
Bundles, as Synthea writes them, the `urn:uuid:` fullUrl of the Medication's entry). Grouped by
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

from ..fhir_reading.references import relative_reference
from ..pipeline.ingest import MEDICATION_USERS

# A shard line: (origin, fullUrl, resource JSON).
Line = tuple[str, str | None, bytes]
_URN = "urn:"


class SharedMedications:
    """The Medications of no patient by id, and by fullUrl when read from a Bundle, each with its (origin,
    fullUrl, JSON) lines in the order read (two Medications with one id are both added: the pipeline then
    reports the ambiguity, as `$assess` would)."""

    def __init__(self) -> None:
        self.by_id: dict[str, list[Line]] = {}
        self.by_full_url: dict[str, list[Line]] = {}

    def __bool__(self) -> bool:
        return bool(self.by_id or self.by_full_url)

    def add(self, resource: dict[str, Any], origin: str, full_url: str | None, raw: bytes) -> None:
        line = (origin, full_url or None, raw)
        resource_id = resource.get("id")
        if isinstance(resource_id, str) and resource_id:
            self.by_id.setdefault(resource_id, []).append(line)
        if full_url:
            self.by_full_url.setdefault(full_url, []).append(line)

    def referenced_by(self, resources: Iterable[dict[str, Any]]) -> list[Line]:
        """The lines of the shared Medications that `resources` reference, once each, in the order referenced:
        by `Medication/<id>`, or (a Bundle's entries, as Synthea writes them) by the `urn:uuid:` fullUrl."""
        if not self:
            return []
        added: list[Line] = []
        taken: set[str] = set()  # origins: one line may be referenced both ways
        for resource in resources:
            reference = _medication_reference(resource)
            if reference is None:
                continue
            if reference.startswith(_URN):
                lines = self.by_full_url.get(reference, ())
            else:
                medication_id = _medication_id(reference)
                lines = self.by_id.get(medication_id, ()) if medication_id is not None else ()
            for line in lines:
                if line[0] not in taken:
                    taken.add(line[0])
                    added.append(line)
        return added

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
    absolute URL ending so, the id a valid R4 id, as the pipeline resolves it); None for anything else
    (a contained `#id`, a `urn:uuid:`, a code, no reference)."""
    reference = _medication_reference(resource)
    return _medication_id(reference) if reference is not None else None


def _medication_id(reference: str) -> str | None:
    """The id in `Medication/<id>` (relative or absolute), read as the pipeline reads a reference."""
    named = relative_reference(reference)
    return named[1] if named is not None and named[0] == "Medication" else None


def _medication_reference(resource: Any) -> str | None:
    """`medicationReference.reference` of a medication resource (MedicationRequest, ...), else None."""
    if not isinstance(resource, dict) or resource.get("resourceType") not in MEDICATION_USERS:
        return None
    medication = resource.get("medicationReference")
    reference = medication.get("reference") if isinstance(medication, dict) else None
    return reference if isinstance(reference, str) and reference else None


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
