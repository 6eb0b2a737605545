"""The inputs the performance benchmark runs: synthetic bundles, Synthea samples, patient-view calls.

Synthetic bundles have the mix of a real export: a few results the rules read (calcium, phosphate,
PTH, creatinine) among many resources they do not (Encounters, Claims, vital-sign Observations).
Patient-view calls carry a patient's resources as prefetch searchsets, with no `fhirServer`, so the
served path never leaves the machine.
"""

from __future__ import annotations

import copy
import json
import os
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
# Real Synthea exports kept beside the repository (not shipped with it); `CALCINOSIS_SHARED_DIR` names the folder.
SHARED = Path(os.environ.get("CALCINOSIS_SHARED_DIR") or ROOT.parent / "shared")
SYNTHEA = SHARED / "fhir-samples" / "synthea"
SMALL_PATIENT_VIEW_SOURCE = ROOT / "fhir_fixtures" / "assess" / "04-metastatic-esrd.json"
START = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)
# The large patient-view call the performance targets name: a real patient's prefetch, grown with
# earlier years of that patient's own kinds of resources to this many bytes (at most).
LARGE_PATIENT_VIEW_BYTES = 1_750_000
# A FHIR date, dateTime or instant: its year is what an earlier copy of a resource moves back.
_DATE = re.compile(r"(\d{4})(-\d{2}(-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:\d{2})?)?)?)?")

# (LOINC, display, unit, value): results the rule library reads.
LABS = [("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", 10.9),
        ("2777-1", "Phosphate [Mass/volume] in Serum or Plasma", "mg/dL", 6.8),
        ("2731-8", "Parathyrin.intact [Mass/volume] in Serum or Plasma", "pg/mL", 410),
        ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 6.1)]
# Vital signs: Observations the rules never read.
VITALS = [("8867-4", "Heart rate", "/min", 72), ("8310-5", "Body temperature", "Cel", 36.8),
          ("9279-1", "Respiratory rate", "/min", 16), ("29463-7", "Body weight", "kg", 81.5)]
PREFETCH_KEY_OF_TYPE = {"Observation": "labs", "Condition": "conditions", "MedicationRequest": "medications",
                        "MedicationAdministration": "medications", "MedicationStatement": "medications",
                        "Medication": "medications", "Procedure": "procedures", "ServiceRequest": "procedures"}


def _observation(patient: str, index: int, code: tuple[str, str, str, float], category: str) -> dict[str, Any]:
    loinc, display, unit, value = code
    when = (START + timedelta(days=3 * index, minutes=index)).isoformat().replace("+00:00", "Z")
    return {"resourceType": "Observation", "id": f"{patient}-obs-{index}", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": category}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": display}], "text": display},
            "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when,
            "valueQuantity": {"value": value + (index % 5) / 10, "unit": unit, "system": "http://unitsofmeasure.org",
                              "code": unit}}


def _encounter(patient: str, index: int) -> dict[str, Any]:
    start = START + timedelta(days=index)
    return {"resourceType": "Encounter", "id": f"{patient}-enc-{index}", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003",
                                  "display": "Encounter for check up"}]}],
            "subject": {"reference": f"Patient/{patient}"},
            "period": {"start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat()}}


def _claim(patient: str, index: int) -> dict[str, Any]:
    return {"resourceType": "Claim", "id": f"{patient}-claim-{index}", "status": "active",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "use": "claim", "patient": {"reference": f"Patient/{patient}"},
            "created": (START + timedelta(days=index)).isoformat(), "provider": {"display": "Example Clinic"},
            "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority",
                                     "code": "normal"}]},
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Example Health Plan"}}],
            "item": [{"sequence": 1, "productOrService": {"coding": [{"system": "http://snomed.info/sct",
                                                                      "code": "185349003"}]},
                      "net": {"value": 125.0, "currency": "USD"}}],
            "total": {"value": 125.0, "currency": "USD"}}


def _patient(patient: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": patient, "gender": "female", "birthDate": "1961-04-12",
            "name": [{"family": "Example", "given": ["Bench"]}]}


def _entries(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, r['resourceType'] + '/' + r['id'])}",
             "resource": r} for r in resources]


def mixed_bundle(total: int) -> bytes:
    """One patient in `total` resources: a few results the rules read (one in ten, 2 to 20), the rest not."""
    patient = "mixed-1"
    labs = max(2, min(20, total // 10))
    resources = [_patient(patient)]
    resources += [_observation(patient, i, LABS[i % len(LABS)], "laboratory") for i in range(labs)]
    unrelated = total - len(resources)
    makers = (_encounter, _claim, lambda p, i: _observation(p, 1000 + i, VITALS[i % len(VITALS)], "vital-signs"))
    resources += [makers[i % 3](patient, i) for i in range(unrelated)]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": _entries(resources)}).encode()


def patients_bundle(patients: int, labs_each: int = 20) -> bytes:
    """`patients` patients of `labs_each` results the rules read each, in one collection."""
    resources = []
    for number in range(patients):
        patient = f"pat-{number}"
        resources.append(_patient(patient))
        resources += [_observation(patient, i, LABS[i % len(LABS)], "laboratory") for i in range(labs_each)]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": _entries(resources)}).encode()


def synthea_samples() -> list[Path]:
    """The real Synthea exports, largest last; empty when the folder is absent."""
    return sorted(SYNTHEA.glob("*.json"), key=lambda p: p.stat().st_size) if SYNTHEA.is_dir() else []


def _with_references(value: Any, references: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: (references.get(v, v) if k == "reference" and isinstance(v, str) else _with_references(v, references))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_with_references(v, references) for v in value]
    return value


def _owner(resource: dict[str, Any]) -> str | None:
    for element in ("subject", "patient"):
        value = resource.get(element)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            return value["reference"]
    return None


def _prefetch_of(bundle_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(patient, prefetch): the first patient of a bundle and its resources as prefetch searchsets by
    type, as an EHR would send them (references as Type/id; types the service does not prefetch left out)."""
    bundle = json.loads(bundle_path.read_bytes())
    entries = [e for e in bundle.get("entry", []) if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    references = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries
                  if isinstance(e.get("fullUrl"), str) and e["resource"].get("id")}
    resources = [_with_references(e["resource"], references) for e in entries]
    patient = next(r for r in resources if r.get("resourceType") == "Patient")
    prefetch: dict[str, Any] = {"patient": patient}
    for key in ("labs", "conditions", "medications", "procedures"):
        prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    for resource in resources:
        key = PREFETCH_KEY_OF_TYPE.get(resource.get("resourceType"))
        owner = _owner(resource)
        if key is None or (owner is not None and owner != f"Patient/{patient['id']}"):
            continue
        if owner is None and resource.get("resourceType") != "Medication":
            continue
        prefetch[key]["entry"].append({"resource": resource, "search": {"mode": "match"}})
    return patient, prefetch


def _call_body(patient: dict[str, Any], prefetch: dict[str, Any]) -> bytes:
    body = {"hookInstance": str(uuid.uuid4()), "hook": "patient-view",
            "context": {"userId": "Practitioner/example", "patientId": patient["id"]}, "prefetch": prefetch}
    return json.dumps(body, indent=1).encode()


def patient_view_body(bundle_path: Path) -> bytes:
    """The first patient of a bundle as a patient-view call, its resources prefetched by type."""
    return _call_body(*_prefetch_of(bundle_path))


def _years_earlier(value: Any, years: int) -> Any:
    """`value` with every date in it moved `years` back (29 February becoming the 28th)."""
    if isinstance(value, dict):
        return {k: _years_earlier(v, years) for k, v in value.items()}
    if isinstance(value, list):
        return [_years_earlier(v, years) for v in value]
    if isinstance(value, str) and _DATE.fullmatch(value):
        moved = f"{int(value[:4]) - years:04d}{value[4:]}"
        return moved.replace("-02-29", "-02-28") if value[4:10] == "-02-29" else moved
    return value


def _years_in(value: Any) -> Iterator[int]:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from _years_in(item)
    elif isinstance(value, str) and _DATE.fullmatch(value):
        yield int(value[:4])


def _earlier_copy(resource: dict[str, Any], years: int, round_: int) -> dict[str, Any]:
    """The same kind of record from `years` earlier in the patient's history, under an id of its own."""
    moved = _years_earlier(copy.deepcopy(resource), years)
    moved["id"] = f"{resource['id']}-h{round_}"
    return moved


def large_patient_view_body(bundle_path: Path, target_bytes: int = LARGE_PATIENT_VIEW_BYTES) -> bytes:
    """A patient-view call of at most `target_bytes`, as close as whole resources allow: the patient's own
    prefetch, then earlier years of the same patient's Observations, Conditions, medication orders and
    procedures (round n: each record moved back n times the span the record covers, under a new id).

    A long record of one patient rather than many patients' records: what a patient-view prefetch of a
    patient with a long history carries.
    """
    patient, prefetch = _prefetch_of(bundle_path)
    keys = ("labs", "conditions", "medications", "procedures")
    originals = [(key, entry["resource"]) for key in keys for entry in prefetch[key]["entry"]
                 if entry["resource"].get("resourceType") != "Medication"]
    years = list(_years_in([resource for _, resource in originals])) or [2000]
    span = max(years) - min(years) + 1
    base = {key: list(prefetch[key]["entry"]) for key in keys}
    rounds = max(1, -(-target_bytes // max(1, len(_call_body(patient, prefetch)))))
    added = [(key, {"resource": _earlier_copy(resource, span * round_, round_), "search": {"mode": "match"}})
             for round_ in range(1, rounds + 1) for key, resource in originals]

    def body_with(count: int) -> bytes:
        for key in keys:
            prefetch[key]["entry"] = list(base[key])
        for key, entry in added[:count]:
            prefetch[key]["entry"].append(entry)
        return _call_body(patient, prefetch)

    low, high = 0, len(added)  # the most entries that fit lie in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        if len(body_with(middle)) <= target_bytes:
            low = middle
        else:
            high = middle - 1
    return body_with(low)


def in_process_cases() -> Iterator[tuple[str, bytes | None, str]]:
    """(name, body, why skipped): the Synthea samples, the mixed bundles, the multi-patient bundles."""
    samples = synthea_samples()
    if not samples:
        yield "Synthea samples", None, f"skipped: {SYNTHEA} is absent"
    for path in samples:
        yield f"Synthea {path.stat().st_size / 1e6:.2f} MB", path.read_bytes(), ""
    for total in (10, 100, 1_000, 10_000):
        yield f"{total:,} resources, 1 patient", mixed_bundle(total), ""
    for patients in (1, 10, 100):
        yield f"{patients} patient{'s' if patients > 1 else ''} x 20 labs", patients_bundle(patients), ""
