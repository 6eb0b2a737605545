"""The synthetic Bulk Data export: valid R4 lines, every resource tied to a patient, realistic size, reproducible."""

from __future__ import annotations

import gzip
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

TOOLS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS_DIR))

from synthetic_export import SHARED_TYPES, main, scenario_templates, write_export  # noqa: E402

LAB = "laboratory"


def _lines(folder: Path) -> dict[str, list[bytes]]:
    return {path.name: path.read_bytes().splitlines() for path in sorted(folder.glob("*.ndjson"))}


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    write_export(folder, len(scenario_templates()) * 2, seed=7)
    return folder


def test_one_template_per_patient_of_every_scenario():
    templates = scenario_templates()
    assert len(templates) == 22  # 20 fixtures, one of them with three patients
    assert all(template[0]["resourceType"] == "Patient" for template in templates)


def test_the_counts_returned_are_the_lines_written(tmp_path):
    counts = write_export(tmp_path, 30, seed=1)
    assert counts == {name: len(lines) for name, lines in _lines(tmp_path).items()}
    assert counts["Patient.ndjson"] == 30


def test_every_line_is_valid_r4_and_every_resource_belongs_to_a_patient_of_the_export(export):
    patients = set()
    owners = Counter()
    for name, lines in _lines(export).items():
        for line in lines:
            resource = orjson.loads(line)
            assert f"{resource['resourceType']}.ndjson" == name
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            if resource["resourceType"] == "Patient":
                patients.add(resource["id"])
            elif resource["resourceType"] not in SHARED_TYPES:
                reference = next(resource[e]["reference"] for e in ("subject", "patient") if e in resource)
                assert reference.startswith("Patient/"), reference
                owners[reference.split("/", 1)[1]] += 1
    assert set(owners) == patients and len(patients) == 44
    text = b"".join(line for lines in _lines(export).values() for line in lines)
    assert b"urn:uuid:" not in text  # references are Type/id, as a Bulk Data server writes them


def test_a_patient_has_about_twenty_labs_and_five_conditions(export):
    labs, conditions = Counter(), Counter()
    for line in _lines(export)["Observation.ndjson"]:
        resource = orjson.loads(line)
        if resource["category"][0]["coding"][0]["code"] == LAB:
            labs[resource["subject"]["reference"]] += 1
    for line in _lines(export)["Condition.ndjson"]:
        conditions[orjson.loads(line)["subject"]["reference"]] += 1
    patients = len(_lines(export)["Patient.ndjson"])
    assert 18 <= sum(labs.values()) / patients <= 30
    assert 5 <= sum(conditions.values()) / patients <= 7
    assert min(conditions.values()) >= 2


def test_new_ids_dates_and_values_for_each_patient_of_a_scenario(tmp_path):
    templates = len(scenario_templates())
    write_export(tmp_path, templates * 2, seed=3)
    patients = [orjson.loads(line) for line in (tmp_path / "Patient.ndjson").read_bytes().splitlines()]
    first, again = patients[0], patients[templates]  # the same scenario made twice
    assert first["id"] != again["id"] and first["name"] == again["name"]
    ids = (first["id"].encode(), again["id"].encode())
    calcium = [orjson.loads(line) for line in (tmp_path / "Observation.ndjson").read_bytes().splitlines()
               if b'"17861-6"' in line and any(rid in line for rid in ids)]
    by_patient = {c["subject"]["reference"]: c for c in sorted(calcium, key=lambda c: c["effectiveDateTime"])}
    latest = list(by_patient.values())
    assert len(latest) == 2
    assert (latest[0]["effectiveDateTime"], latest[0]["valueQuantity"]["value"]) != (
        latest[1]["effectiveDateTime"], latest[1]["valueQuantity"]["value"])


def test_the_same_seed_writes_the_same_bytes_and_gzip_holds_the_same_lines(tmp_path):
    write_export(tmp_path / "a", 25, seed=5)
    write_export(tmp_path / "b", 25, seed=5)
    write_export(tmp_path / "c", 25, seed=6)
    counts = write_export(tmp_path / "z", 25, seed=5, gzip=True)
    assert _lines(tmp_path / "a") == _lines(tmp_path / "b") != _lines(tmp_path / "c")
    assert set(counts) == {f"{name}.gz" for name in _lines(tmp_path / "a")}
    for name, lines in _lines(tmp_path / "a").items():
        assert gzip.decompress((tmp_path / "z" / f"{name}.gz").read_bytes()).splitlines() == lines
    write_export(tmp_path / "y", 25, seed=5, gzip=True)
    assert (tmp_path / "z" / "Patient.ndjson.gz").read_bytes() == (tmp_path / "y" / "Patient.ndjson.gz").read_bytes()


def test_bad_lines_on_request(tmp_path):
    write_export(tmp_path, 20, seed=2, bad_lines=6)
    unreadable = not_objects = no_patient = 0
    for lines in _lines(tmp_path).values():
        for line in lines:
            try:
                resource = orjson.loads(line)
            except orjson.JSONDecodeError:
                unreadable += 1
                continue
            if not isinstance(resource, dict):
                not_objects += 1
            elif resource.get("subject", {}).get("reference", "").startswith("Group/"):
                no_patient += 1
    assert (unreadable, not_objects, no_patient) == (2, 2, 2)


def test_the_command_line(tmp_path, capsys):
    assert main(["--patients", "3", "--out", str(tmp_path), "--seed", "4"]) == 0
    assert "Patient.ndjson: 3 lines" in capsys.readouterr().out


MEDICATION_USERS = ("MedicationRequest.ndjson", "MedicationStatement.ndjson", "MedicationAdministration.ndjson")


def test_shared_medications_put_each_drug_once_in_medication_ndjson_and_the_orders_reference_it(tmp_path):
    patients = len(scenario_templates()) * 2
    plain = write_export(tmp_path / "plain", patients, seed=9)
    shared = write_export(tmp_path / "shared", patients, seed=9, shared_medications=True)
    assert "Medication.ndjson" not in plain  # off by default: the export and its counts as before
    assert {name: count for name, count in shared.items() if name != "Medication.ndjson"} == plain
    medications = [orjson.loads(line) for line in _lines(tmp_path / "shared")["Medication.ndjson"]]
    by_id = {medication["id"]: medication for medication in medications}
    assert len(by_id) == len(medications) >= 3  # each drug once, however many patients take it
    referenced = set()
    for name in MEDICATION_USERS:
        plain_orders = [orjson.loads(line) for line in _lines(tmp_path / "plain")[name]]
        shared_orders = [orjson.loads(line) for line in _lines(tmp_path / "shared")[name]]
        assert len(shared_orders) == len(plain_orders) > 0
        for before, after in zip(plain_orders, shared_orders):
            get_fhir_model_class(after["resourceType"]).model_validate(after)
            assert "medicationCodeableConcept" not in after
            medication_id = after["medicationReference"]["reference"].removeprefix("Medication/")
            assert by_id[medication_id]["code"] == before["medicationCodeableConcept"]  # the same drug
            assert list(after).index("medicationReference") == list(before).index("medicationCodeableConcept")
            referenced.add(medication_id)
    assert referenced == set(by_id)
    for medication in medications:
        get_fhir_model_class("Medication").model_validate(medication)
    for name in set(plain) - {*MEDICATION_USERS}:  # every other file the same bytes
        assert _lines(tmp_path / "shared")[name] == _lines(tmp_path / "plain")[name], name


def test_the_command_line_writes_shared_medications_on_request(tmp_path, capsys):
    assert main(["--patients", str(len(scenario_templates())), "--out", str(tmp_path), "--shared-medications"]) == 0
    assert "Medication.ndjson:" in capsys.readouterr().out
