"""An export's shared Medications: a patient's order that references `Medication/<id>` of Medication.ndjson
is screened with that Medication, as `$assess` would screen a Bundle holding both; a reference to a
Medication the export lacks still gets the pipeline's warning; a resumed run writes the same bytes."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import orjson
import pytest

from conftest import FIXTURE_NOW, FIXTURES_DIR
from service.pipeline.assess import get_assessor
from service.screening import local_engine
from service.screening.local_engine import run_local
from service.screening.patient_keys import patient_key_of
from service.screening.patient_screen import OUTPUT_TYPES, screen_patient
from service.screening.shared_medications import SharedMedications, referenced_medication_id

sys.path.insert(0, str(FIXTURES_DIR / "assess" / "tools"))
from synthetic_export import scenario_templates, write_export  # noqa: E402

OUTPUT_FILES = ("RiskAssessment.ndjson", "CarePlan.ndjson", "ServiceRequest.ndjson", "summary.csv",
                "summary.parquet", "issues.ndjson", "report.html")
NOT_IN_BUNDLE = "is not in the bundle; the medication's code is unknown"
# the scenario whose grade depends on its drug: IV calcium gluconate named in the order's text only
IATROGENIC_PATIENT = "p-iat-008"
CALCIUM_GLUCONATE = "Calcium gluconate 10% injection"


def _patients_per_cycle() -> int:
    return len(scenario_templates())


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shared-export")
    write_export(folder, _patients_per_cycle() + 6, seed=5, shared_medications=True)
    return folder


@pytest.fixture(scope="module")
def screened(export, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shared-out")
    run_local(export, out, workers=2, now=FIXTURE_NOW, progress=False)
    return out


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _by_patient(export: Path) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """Each patient's resources and the export's Medications by id, read without the engine."""
    groups: dict[str, list[dict]] = {}
    medications: dict[str, dict] = {}
    for path in sorted(export.glob("*.ndjson")):
        for resource in _lines(path):
            key = patient_key_of(resource)
            if key:
                groups.setdefault(key, []).append(resource)
            elif resource["resourceType"] == "Medication":
                medications[resource["id"]] = resource
    return groups, medications


def _outputs_by_patient(out: Path) -> dict[str, dict[str, list[dict]]]:
    found: dict[str, dict[str, list[dict]]] = {}
    for kind in OUTPUT_TYPES:
        for resource in _lines(out / f"{kind}.ndjson"):
            patient = resource["subject"]["reference"].split("/", 1)[1]
            found.setdefault(patient, {name: [] for name in OUTPUT_TYPES})[kind].append(resource)
    return found


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "summary.csv", encoding="utf-8", newline="") as handle:
        return {row["patient_id"]: row for row in csv.DictReader(handle)}


def _referencing(groups: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Patient id -> the Medication ids its orders reference."""
    found: dict[str, list[str]] = {}
    for patient_id, resources in groups.items():
        ids = [referenced_medication_id(resource) for resource in resources]
        if any(ids):
            found[patient_id] = list(dict.fromkeys(i for i in ids if i))
    return found


def _iatrogenic_patient(groups: dict[str, list[dict]], medications: dict[str, dict]) -> str:
    """The patient made from the IV calcium scenario (its ids are new; its drug is not)."""
    for patient_id, ids in _referencing(groups).items():
        if any(medications[i]["code"].get("text") == CALCIUM_GLUCONATE for i in ids):
            return patient_id
    raise AssertionError("no patient was given the IV calcium order")


# ------------------------------------------------------------------ references


@pytest.mark.parametrize("reference, found", [
    ("Medication/med-1", "med-1"),
    ("https://ehr.example/fhir/Medication/med-1", "med-1"),
    ("https://ehr.example/fhir/Medication/med-1/_history/3", "med-1"),
    ("#med-1", None),
    ("urn:uuid:5f0c6a0e-2d8f-4b40-9c41-0e3f5d1c2b7a", None),
    ("Substance/med-1", None),
    ("Medication/", None),
])
def test_the_medication_an_order_references(reference, found):
    order = {"resourceType": "MedicationRequest", "medicationReference": {"reference": reference}}
    assert referenced_medication_id(order) == found


def test_only_medication_resources_reference_a_shared_medication():
    observation = {"resourceType": "Observation", "medicationReference": {"reference": "Medication/med-1"}}
    assert referenced_medication_id(observation) is None
    assert referenced_medication_id({"resourceType": "MedicationStatement",
                                     "medicationCodeableConcept": {"text": "x"}}) is None


def test_each_referenced_medication_is_added_once_in_the_order_referenced():
    shared = SharedMedications.from_rows([
        ("Medication.ndjson:1", None, b'{"resourceType":"Medication","id":"a"}'),
        ("Medication.ndjson:2", None, b'{"resourceType":"Medication","id":"b"}'),
        ("Medication.ndjson:3", None, b'{"resourceType":"Medication","id":"c"}'),
    ])
    orders = [{"resourceType": "MedicationRequest", "medicationReference": {"reference": reference}}
              for reference in ("Medication/b", "https://h/fhir/Medication/a", "Medication/b", "Medication/zz")]
    assert [origin for origin, _url, _raw in shared.referenced_by(orders)] == ["Medication.ndjson:2",
                                                                                "Medication.ndjson:1"]


# ------------------------------------------------------------------ the local engine


def test_a_patient_is_screened_with_the_medications_its_orders_reference(export, screened):
    """The same outputs as screening the patient's resources plus the Medications, and no 'not in the bundle'."""
    groups, medications = _by_patient(export)
    referencing = _referencing(groups)
    assert len(referencing) >= 4
    outputs = _outputs_by_patient(screened)
    assessor = get_assessor()
    for patient_id, ids in referencing.items():
        alone = screen_patient(patient_id, groups[patient_id] + [medications[i] for i in ids], assessor,
                               now=FIXTURE_NOW)
        assert outputs[patient_id] == alone.outputs, patient_id
    issues = _lines(screened / "issues.ndjson")
    assert not [issue for issue in issues if NOT_IN_BUNDLE in issue["diagnostics"]]
    notes = [issue for issue in issues if issue["diagnostics"].startswith(f"{len(medications)} Medication resource(s)")]
    assert len(notes) == 1 and notes[0]["severity"] == "information"
    assert "not assessed" not in notes[0]["diagnostics"] and "references them" in notes[0]["diagnostics"]
    assert notes[0]["source"] == "Medication.ndjson:1"
    others = [issue for issue in issues if issue["diagnostics"].startswith(("2 Organization", "3 Practitioner"))]
    assert others and all("; not assessed (shared resources" in issue["diagnostics"] for issue in others)


def test_the_drug_read_through_its_reference_decides_the_grade(export, screened):
    groups, medications = _by_patient(export)
    patient_id = _iatrogenic_patient(groups, medications)
    row = _rows(screened)[patient_id]
    assert (row["top_type"], row["top_grade"]) == ("iatrogenic", "high")
    without = screen_patient(patient_id, groups[patient_id], get_assessor(), now=FIXTURE_NOW)
    assert (without.summary["top_type"], without.summary["top_grade"]) != ("iatrogenic", "high")
    assert any(NOT_IN_BUNDLE in issue["diagnostics"] for issue in without.issues)


def test_an_absolute_reference_reads_the_shared_medication_too(export, screened, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(export, copy)
    path = copy / "MedicationAdministration.ndjson"
    path.write_bytes(path.read_bytes().replace(b'"reference":"Medication/',
                                               b'"reference":"https://ehr.example/fhir/Medication/'))
    out = tmp_path / "out"
    run_local(copy, out, workers=1, now=FIXTURE_NOW, progress=False)
    groups, medications = _by_patient(copy)
    patient_id = _iatrogenic_patient(groups, medications)
    assert (_rows(out)[patient_id]["top_type"], _rows(out)[patient_id]["top_grade"]) == ("iatrogenic", "high")
    assert _outputs_by_patient(out)[patient_id] == _outputs_by_patient(screened)[patient_id]
    assert not [issue for issue in _lines(out / "issues.ndjson") if NOT_IN_BUNDLE in issue["diagnostics"]]


def test_a_reference_to_a_medication_the_export_lacks_still_gets_the_warning(export, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(export, copy)
    kept = [line for line in (copy / "Medication.ndjson").read_bytes().splitlines()
            if CALCIUM_GLUCONATE.encode() not in line]
    (copy / "Medication.ndjson").write_bytes(b"".join(line + b"\n" for line in kept))
    out = tmp_path / "out"
    run_local(copy, out, workers=2, now=FIXTURE_NOW, progress=False)
    groups, _medications = _by_patient(copy)
    warned = [issue for issue in _lines(out / "issues.ndjson") if NOT_IN_BUNDLE in issue["diagnostics"]]
    administrations = _lines(copy / "MedicationAdministration.ndjson")
    lacking = {resource["subject"]["reference"].split("/", 1)[1] for resource in administrations}
    assert warned and {issue["patient_id"] for issue in warned} <= lacking
    assert all(issue["severity"] == "warning" and issue["source"].startswith("MedicationAdministration.ndjson:")
               for issue in warned)
    for patient_id in {issue["patient_id"] for issue in warned}:
        assert _rows(out)[patient_id]["top_type"] != "iatrogenic" or _rows(out)[patient_id]["top_grade"] != "high"


def test_the_outputs_are_the_same_bytes_whatever_the_worker_count(export, screened, tmp_path):
    run_local(export, tmp_path / "one", workers=1, now=FIXTURE_NOW, progress=False)
    for name in OUTPUT_FILES:
        assert (tmp_path / "one" / name).read_bytes() == (screened / name).read_bytes(), name


def test_a_run_stopped_half_way_resumes_to_the_same_bytes(export, screened, tmp_path, monkeypatch):
    """Stopped once some parts are joined, then resumed: the shared Medications are read from the work
    folder the first run left, and the outputs are those of a run never stopped."""
    out = tmp_path / "stopped"
    catch_up = local_engine._Joiner.catch_up

    def stop_after_three(self):
        catch_up(self)
        if self.joined >= 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(local_engine._Joiner, "catch_up", stop_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_local(export, out, workers=1, now=FIXTURE_NOW, progress=False)
    monkeypatch.setattr(local_engine._Joiner, "catch_up", catch_up)
    assert list((out / local_engine.WORK_FOLDER / "shards").glob("chunk-*-medications.tsv"))
    resumed = run_local(export, out, workers=2, resume=True, progress=False)
    assert resumed.shards_done_before >= 3
    for name in OUTPUT_FILES:
        assert (out / name).read_bytes() == (screened / name).read_bytes(), name


def test_a_work_folder_from_before_shared_medications_is_partitioned_again(export, screened, tmp_path, monkeypatch):
    """A partition recorded without its Medication files would screen the orders without their drug."""
    out = tmp_path / "old"
    catch_up = local_engine._Joiner.catch_up

    def stop_at_once(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(local_engine._Joiner, "catch_up", stop_at_once)
    with pytest.raises(KeyboardInterrupt):
        run_local(export, out, workers=1, now=FIXTURE_NOW, progress=False)
    monkeypatch.setattr(local_engine._Joiner, "catch_up", catch_up)
    record = out / local_engine.WORK_FOLDER / local_engine.PARTITION_FILE
    partitioned = orjson.loads(record.read_bytes())
    del partitioned["medications"]
    record.write_bytes(orjson.dumps(partitioned))
    run_local(export, out, workers=1, resume=True, progress=False)
    for name in OUTPUT_FILES:
        assert (out / name).read_bytes() == (screened / name).read_bytes(), name


def test_in_a_folder_of_bundles_an_order_reads_its_medication_through_its_urn_uuid(export, screened, tmp_path):
    """As Synthea writes them: each patient a Bundle, every entry with a `urn:uuid:` fullUrl, the order's
    medicationReference that fullUrl. The Medication names no patient, so it is shared like one of an
    export's, and found through the fullUrl the order names."""
    groups, medications = _by_patient(export)
    patient_id = _iatrogenic_patient(groups, medications)
    folder = tmp_path / "bundles"
    folder.mkdir()
    full_urls = {medication_id: f"urn:uuid:00000000-0000-4000-8000-{number:012d}"
                 for number, medication_id in enumerate(sorted(medications))}
    resources_of: dict[str, list[tuple[dict, str]]] = {}
    for number, (key, resources) in enumerate(sorted(groups.items())):
        entries, ordered = [], []
        for position, resource in enumerate(resources):
            medication_id = referenced_medication_id(resource)
            if medication_id:
                resource = dict(resource, medicationReference={"reference": full_urls[medication_id]})
                ordered.append(medication_id)
            entries.append((resource, f"urn:uuid:00000000-0000-4000-9000-{number:06d}{position:06d}"))
        entries += [(medications[i], full_urls[i]) for i in dict.fromkeys(ordered)]
        resources_of[key] = entries
        bundle = {"resourceType": "Bundle", "type": "transaction",
                  "entry": [{"fullUrl": url, "resource": resource} for resource, url in entries]}
        (folder / f"{key}.json").write_bytes(orjson.dumps(bundle))
    out = tmp_path / "out"
    run_local(folder, out, workers=2, now=FIXTURE_NOW, progress=False)
    assert (_rows(out)[patient_id]["top_type"], _rows(out)[patient_id]["top_grade"]) == ("iatrogenic", "high")
    assert not [issue for issue in _lines(out / "issues.ndjson") if NOT_IN_BUNDLE in issue["diagnostics"]]
    entries = resources_of[patient_id]
    alone = screen_patient(patient_id, [resource for resource, _url in entries], get_assessor(), now=FIXTURE_NOW,
                           full_urls=[url for _resource, url in entries])
    subject = alone.outputs["RiskAssessment"][0]["subject"]
    assert {kind: [resource for resource in _lines(out / f"{kind}.ndjson") if resource.get("subject") == subject]
            for kind in OUTPUT_TYPES} == alone.outputs
