"""Write a synthetic FHIR Bulk Data export: N patients as one NDJSON file per resource type.

Population screening needs exports of any size to test and measure with. Each patient is one of
the $assess fixture scenarios (`scenarios.py`) made anew: new ids (a random uuid per resource,
references rewritten to `Type/id` as a Bulk Data server writes them), dates moved back by up to
three months (the birth date with them, so a child stays a child), lab values moved by up to 8%,
older results of the analytes the scenario already has, routine results and problems the rules
never read, and some encounters, immunizations and vital signs. A patient then holds about 20
laboratory results and 5 conditions, like a real chart. Organizations and Practitioners, which
belong to no patient, sit in their own files. `bad_lines` adds lines a reader must survive: a
cut-off line, a line that is not an object, a resource with no patient. `shared_medications` writes
medication orders as an EHR's export does: each drug once as a Medication in Medication.ndjson, the
patient's MedicationRequest/Statement/Administration pointing at it with `medicationReference`
(off by default: the orders then carry `medicationCodeableConcept`, and the other files are the same
either way).

Run from the repository root:
    python fhir_fixtures/assess/tools/synthetic_export.py --patients 1000 --out /tmp/export [--gzip] [--seed 0] \
        [--shared-medications]
The output depends only on the arguments: the same seed writes the same bytes.
"""

from __future__ import annotations

import argparse
import copy
import gzip as gzip_module
import hashlib
import random
import re
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Iterator

import orjson

TOOLS_DIR = Path(__file__).resolve().parent
if str(TOOLS_DIR) not in sys.path:
    sys.path.insert(0, str(TOOLS_DIR))

from fhir_factory import LOINC, coding, condition, lab  # noqa: E402
from scenarios import ALL_FIXTURES  # noqa: E402

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?$")
_PATIENT_ELEMENTS = ("subject", "patient", "beneficiary")
_MAX_SHIFT_DAYS = 90
_VALUE_JITTER = 0.08
SHARED_TYPES = frozenset({"Organization", "Practitioner", "Medication", "Location"})
MEDICATION_USERS = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")

# Older results of an analyte the scenario has (LOINC code -> a value within the default adult range).
HISTORY_VALUES: dict[str, tuple[float, float, int]] = {
    "17861-6": (8.7, 9.9, 1), "2000-8": (2.18, 2.47, 2), "2777-1": (2.8, 4.3, 1), "14879-1": (0.9, 1.39, 2),
    "2160-0": (0.6, 1.1, 2), "1751-7": (3.6, 4.8, 1), "2731-8": (18, 60, 0),
}
# Routine results the rules never read: (LOINC code, text, unit, low, high, decimals).
ROUTINE_LABS: tuple[tuple[str, str, str, float, float, int], ...] = (
    ("718-7", "Hemoglobin", "g/dL", 11.5, 16.5, 1),
    ("2345-7", "Glucose, serum", "mg/dL", 70, 140, 0),
    ("2823-3", "Potassium, serum", "mmol/L", 3.5, 5.1, 1),
    ("2951-2", "Sodium, serum", "mmol/L", 135, 145, 0),
    ("2075-0", "Chloride, serum", "mmol/L", 98, 107, 0),
    ("4548-4", "Hemoglobin A1c", "%", 4.8, 7.5, 1),
    ("2093-3", "Cholesterol, total", "mg/dL", 140, 260, 0),
)
# Problems the rules never read: (SNOMED CT code, display).
ROUTINE_PROBLEMS: tuple[tuple[str, str], ...] = (
    ("38341003", "Hypertension"), ("55822004", "Hyperlipidemia"), ("239873007", "Osteoarthritis of knee"),
    ("235595009", "Gastroesophageal reflux disease"), ("367498001", "Seasonal allergic rhinitis"),
    ("271737000", "Anemia"), ("15777000", "Prediabetes"),
)
CVX = "http://hl7.org/fhir/sid/cvx"


def write_export(out_dir: Path, patients: int, *, seed: int = 0, gzip: bool = False,
                 bad_lines: int = 0, shared_medications: bool = False) -> dict[str, int]:
    """Write `patients` patients as `<Type>.ndjson` (or `.ndjson.gz`) files in `out_dir`.

    Returns the number of lines written per file name. `bad_lines` unreadable or patientless lines
    are spread over Observation.ndjson and Condition.ndjson. `shared_medications`: each order's drug
    as a Medication of Medication.ndjson (once per drug), the order referencing it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    templates = scenario_templates()
    files = _Files(out_dir, gzip)
    try:
        for shared in _shared_resources(templates):
            files.write(shared)
        bad_at = sorted(rng.sample(range(max(patients, 1)), min(bad_lines, max(patients, 1)))) if bad_lines else []
        extra_bad = max(bad_lines - len(bad_at), 0)
        medications_written: set[str] = set()
        for number in range(patients):
            template = templates[number % len(templates)]
            made = make_patient(template, rng)
            if shared_medications:
                for medication in share_medications(made):
                    if medication["id"] not in medications_written:
                        medications_written.add(medication["id"])
                        files.write(medication)
            for resource in made:
                files.write(resource)
            while bad_at and bad_at[0] == number:
                files.write_raw(*_bad_line(len(bad_at) + extra_bad, rng))
                bad_at.pop(0)
        for index in range(extra_bad):
            files.write_raw(*_bad_line(index, rng))
    finally:
        files.close()
    return dict(sorted(files.counts.items()))


class _Files:
    """One open file per resource type, opened when its first line comes."""

    def __init__(self, out_dir: Path, gzip: bool) -> None:
        self.out_dir, self.gzip = out_dir, gzip
        self.handles: dict[str, IO[bytes]] = {}
        self.counts: dict[str, int] = {}

    def write(self, resource: dict[str, Any]) -> None:
        self.write_raw(resource["resourceType"], orjson.dumps(resource))

    def write_raw(self, kind: str, line: bytes) -> None:
        name = f"{kind}.ndjson" + (".gz" if self.gzip else "")
        handle = self.handles.get(name)
        if handle is None:
            path = self.out_dir / name
            # mtime=0: the same arguments write the same bytes
            handle = gzip_module.GzipFile(path, "wb", compresslevel=1, mtime=0) if self.gzip else open(path, "wb")
            self.handles[name] = handle
        handle.write(line + b"\n")
        self.counts[name] = self.counts.get(name, 0) + 1

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


def _bad_line(index: int, rng: random.Random) -> tuple[str, bytes]:
    """A line a reader must report and skip (and then go on)."""
    kind = index % 3
    if kind == 0:
        return "Observation", b'{"resourceType": "Observation", "id": "cut-off-' + str(index).encode() + b'", "sta'
    if kind == 1:
        return "Condition", b'["not", "a", "resource"]'
    orphan = lab(f"no-patient-{index}", "Group/ward-7", "17861-6", "2026-10-01T08:00:00Z", value=9.1, unit="mg/dL")
    return "Observation", orjson.dumps(orphan)


def scenario_templates() -> list[list[dict[str, Any]]]:
    """Every patient of every fixture scenario: the resources that belong to it, references as `Type/id`."""
    templates: list[list[dict[str, Any]]] = []
    for build in ALL_FIXTURES:
        fixture = build()
        resources = [entry["resource"] for entry in fixture.bundle.get("entry", []) if "resource" in entry]
        by_urn = {f"urn:uuid:{r['id']}": f"{r['resourceType']}/{r['id']}" for r in resources if "id" in r}
        for entry in fixture.bundle.get("entry", []):
            if "fullUrl" in entry and "resource" in entry:
                by_urn[entry["fullUrl"]] = f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
        resources = [_rewrite_references(copy.deepcopy(r), lambda ref: by_urn.get(ref, ref)) for r in resources]
        owners = {r["id"]: [] for r in resources if r["resourceType"] == "Patient"}
        for resource in resources:
            owner = _owner(resource)
            if owner in owners:
                owners[owner].append(resource)
        for patient_id, owned in owners.items():
            patient = next(r for r in resources if r["resourceType"] == "Patient" and r["id"] == patient_id)
            shared = [r for r in resources if r["resourceType"] in SHARED_TYPES]
            templates.append([patient, *[r for r in owned if r is not patient], *shared])
    return templates


def _shared_resources(templates: list[list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    for template in templates:
        for resource in template:
            key = (resource["resourceType"], resource["id"])
            if resource["resourceType"] in SHARED_TYPES and key not in seen:
                seen.add(key)
                yield resource


def _owner(resource: dict[str, Any]) -> str | None:
    if resource["resourceType"] == "Patient":
        return resource["id"]
    for element in _PATIENT_ELEMENTS:
        reference = (resource.get(element) or {}).get("reference") if isinstance(resource.get(element), dict) else None
        if isinstance(reference, str) and reference.startswith("Patient/"):
            return reference.split("/", 1)[1]
    return None


def make_patient(template: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """One new patient from a scenario template: new ids, moved dates and values, a fuller chart."""
    shift = timedelta(days=rng.randint(0, _MAX_SHIFT_DAYS), minutes=rng.choice((0, 15, 30, 45)))
    own = [r for r in template if r["resourceType"] not in SHARED_TYPES]
    new_ids = {f"{r['resourceType']}/{r['id']}": f"{r['resourceType']}/{_uuid(rng)}" for r in own}
    made = []
    for original in own:
        resource = _rewrite_references(copy.deepcopy(original), lambda ref: new_ids.get(ref, ref))
        resource["id"] = new_ids[f"{original['resourceType']}/{original['id']}"].split("/", 1)[1]
        _shift_dates(resource, shift)
        if resource["resourceType"] == "Observation":
            _jitter(resource, rng)
        made.append(resource)
    patient_ref = f"Patient/{made[0]['id']}"
    made.extend(_fuller_chart(made, patient_ref, rng))
    return made


def share_medications(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn each order's `medicationCodeableConcept` into a `medicationReference` to a Medication of that
    code (in place, the element where it was); returns those Medications. The id comes from the code, so
    every patient given the same drug references the same Medication, as in an EHR's export."""
    medications: list[dict[str, Any]] = []
    for index, resource in enumerate(resources):
        concept = resource.get("medicationCodeableConcept")
        if resource["resourceType"] not in MEDICATION_USERS or not isinstance(concept, dict):
            continue
        digest = hashlib.sha256(orjson.dumps(concept, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        medication = {"resourceType": "Medication", "id": f"med-{digest}", "code": concept}
        medications.append(medication)
        reference = {"reference": f"Medication/{medication['id']}"}
        resources[index] = {key: value for key, value in _renamed(resource, "medicationCodeableConcept",
                                                                  "medicationReference", reference)}
    return medications


def _renamed(resource: dict[str, Any], old: str, new: str, value: Any) -> Iterator[tuple[str, Any]]:
    """The items of `resource` with `old` replaced by `new` = `value`, where `old` was."""
    for key, item in resource.items():
        yield (new, value) if key == old else (key, item)


def _fuller_chart(made: list[dict[str, Any]], patient_ref: str, rng: random.Random) -> list[dict[str, Any]]:
    """Older results of the analytes already there, routine labs and problems, visits and vaccines."""
    labs = [r for r in made if r["resourceType"] == "Observation" and "valueQuantity" in r]
    latest = max((r.get("effectiveDateTime", "") for r in labs), default="") or "2026-09-01T08:00:00Z"
    anchor = datetime.fromisoformat(latest.replace("Z", "+00:00"))
    extra: list[dict[str, Any]] = []
    present = {c["code"] for r in labs for c in r["code"].get("coding", []) if c.get("system") == LOINC}
    for code in sorted(present & HISTORY_VALUES.keys()):
        low, high, decimals = HISTORY_VALUES[code]
        unit = next(r["valueQuantity"]["unit"] for r in labs if any(c["code"] == code for c in r["code"]["coding"]))
        for months_back in (5, 11):
            when = _instant(anchor - timedelta(days=30 * months_back + rng.randint(0, 20)))
            extra.append(lab(_uuid(rng), patient_ref, code, when, value=_number(rng, low, high, decimals), unit=unit))
    wanted_labs = 20 - len(labs) - len(extra)
    for index in range(max(wanted_labs, 4)):
        code, text, unit, low, high, decimals = ROUTINE_LABS[index % len(ROUTINE_LABS)]
        when = _instant(anchor - timedelta(days=45 * (index // len(ROUTINE_LABS)) + rng.randint(0, 10)))
        extra.append(_routine_lab(_uuid(rng), patient_ref, code, text, unit, when, _number(rng, low, high, decimals)))
    conditions = sum(1 for r in made if r["resourceType"] == "Condition")
    for code, display in rng.sample(ROUTINE_PROBLEMS, k=max(5 - conditions, 1)):
        onset = (anchor - timedelta(days=rng.randint(400, 4000))).date().isoformat()
        extra.append(condition(_uuid(rng), patient_ref, snomed=(code, display), text=display, onset=onset,
                               recorded=f"{onset}T10:00:00Z"))
    for visit in range(2):
        start = anchor - timedelta(days=120 * visit + rng.randint(0, 30))
        encounter = _uuid(rng)
        extra.append({"resourceType": "Encounter", "id": encounter, "status": "finished",
                      "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory"),
                      "type": [{"text": "Encounter for check up"}], "subject": {"reference": patient_ref},
                      "period": {"start": _instant(start), "end": _instant(start + timedelta(minutes=30))}})
        extra.append(_routine_lab(_uuid(rng), patient_ref, "29463-7", "Body weight", "kg", _instant(start),
                                  _number(rng, 48, 110, 1), category="vital-signs"))
    extra.append({"resourceType": "Immunization", "id": _uuid(rng), "status": "completed",
                  "vaccineCode": {"coding": [coding(CVX, "140", "Influenza, seasonal, injectable, preservative free")]},
                  "patient": {"reference": patient_ref},
                  "occurrenceDateTime": _instant(anchor - timedelta(days=rng.randint(20, 300))), "primarySource": True})
    return extra


def _routine_lab(rid: str, subject: str, code: str, text: str, unit: str, when: str, value: float,
                 category: str = "laboratory") -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": rid, "status": "final",
        "category": [{"coding": [coding("http://terminology.hl7.org/CodeSystem/observation-category", category,
                                        "Laboratory" if category == "laboratory" else "Vital Signs")]}],
        "code": {"coding": [coding(LOINC, code, text)], "text": text},
        "subject": {"reference": subject}, "effectiveDateTime": when, "issued": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def _rewrite_references(node: Any, rewrite: Any) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                node[key] = rewrite(value)
            else:
                _rewrite_references(value, rewrite)
    elif isinstance(node, list):
        for item in node:
            _rewrite_references(item, rewrite)
    return node


def _shift_dates(node: Any, shift: timedelta) -> None:
    """Move every date and dateTime in `node` back by `shift` (whole days for a plain date)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        if isinstance(value, str) and _DATE.match(value):
            node[key] = _moved(value, shift)
        elif isinstance(value, (dict, list)) and key != "text":
            _shift_dates(value, shift)


def _moved(text: str, shift: timedelta) -> str:
    if len(text) == 10:
        return (datetime.fromisoformat(text) - timedelta(days=shift.days)).date().isoformat()
    moment = datetime.fromisoformat(text.replace("Z", "+00:00")) - shift
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if text.endswith("Z") else moment.strftime("%z")[:3] + ":" +
                                                 moment.strftime("%z")[3:])


def _jitter(observation: dict[str, Any], rng: random.Random) -> None:
    """Move a measured value by up to 8%, keeping the decimals the lab reported."""
    quantity = observation.get("valueQuantity")
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), (int, float)):
        return
    value = quantity["value"]
    decimals = len(repr(value).split(".")[1]) if isinstance(value, float) else 0
    moved = value * (1 + rng.uniform(-_VALUE_JITTER, _VALUE_JITTER))
    quantity["value"] = round(moved, decimals) if decimals else int(round(moved))


def _number(rng: random.Random, low: float, high: float, decimals: int) -> float | int:
    value = round(rng.uniform(low, high), decimals)
    return value if decimals else int(value)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _instant(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, required=True, help="how many patients to write")
    parser.add_argument("--out", required=True, help="the folder to write the NDJSON files into")
    parser.add_argument("--gzip", action="store_true", help="write .ndjson.gz files")
    parser.add_argument("--seed", type=int, default=0, help="the random seed (same seed, same bytes)")
    parser.add_argument("--bad-lines", type=int, default=0, help="add this many unreadable or patientless lines")
    parser.add_argument("--shared-medications", action="store_true",
                        help="write each drug once in Medication.ndjson, orders referencing it (medicationReference)")
    args = parser.parse_args(argv)
    counts = write_export(Path(args.out), args.patients, seed=args.seed, gzip=args.gzip, bad_lines=args.bad_lines,
                          shared_medications=args.shared_medications)
    for name, lines in counts.items():
        print(f"{name}: {lines} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
