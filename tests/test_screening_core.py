"""Screening one patient is `$assess` on that patient's resources: same outputs, a summary row, located problems."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from conftest import FIXTURE_NOW, FIXTURES_DIR
from service.pipeline.assess import get_assessor
from service.screening.outputs import PartWriter, ScreenWriter, assemble, part_counts
from service.screening.patient_keys import patient_id_of_reference, patient_key_of
from service.screening.patient_screen import OUTPUT_TYPES, screen_patient
from service.screening.summary_row import SUMMARY_COLUMNS, summary_row

ASSESS_DIR = FIXTURES_DIR / "assess"
# single-patient fixtures whose every resource belongs to the patient (no shared resources, no Composition)
SINGLE_PATIENT = ["01-dystrophic-systemic-sclerosis", "04-metastatic-esrd", "07-calciphylaxis-dialysis",
                  "08-iatrogenic-iv-calcium", "11-entered-in-error", "13-no-labs", "14-unknown-unit"]


def _fixture(stem: str) -> tuple[list[dict], list[str | None]]:
    bundle = orjson.loads((ASSESS_DIR / f"{stem}.json").read_bytes())
    entries = [entry for entry in bundle["entry"] if "resource" in entry]
    return [entry["resource"] for entry in entries], [entry.get("fullUrl") for entry in entries]


def _golden(stem: str) -> list[dict]:
    return [entry["resource"] for entry in orjson.loads((ASSESS_DIR / f"{stem}.expected.json").read_bytes())["entry"]]


def _as_ndjson_references(resource: dict, resources: list[dict]) -> dict:
    """The golden resource with references between outputs as Type/id (how an NDJSON output writes them)."""
    text = orjson.dumps(resource).decode()
    for other in resources:
        text = text.replace(f'"urn:uuid:{other["id"]}"', f'"{other["resourceType"]}/{other["id"]}"')
    return json.loads(text)


# ------------------------------------------------------------------ patient keys


@pytest.mark.parametrize(("resource", "key"), [
    ({"resourceType": "Patient", "id": "p-1"}, "p-1"),
    ({"resourceType": "Patient", "id": "bad id"}, None),
    ({"resourceType": "Patient"}, None),
    ({"resourceType": "Observation", "subject": {"reference": "Patient/p-1"}}, "p-1"),
    ({"resourceType": "Observation", "subject": {"reference": "https://h/fhir/Patient/p-1/_history/2"}}, "p-1"),
    ({"resourceType": "Condition", "subject": {"reference": "urn:uuid:0e36c8df-1"}}, "0e36c8df-1"),
    ({"resourceType": "Immunization", "patient": {"reference": "Patient/p-2"}}, "p-2"),
    ({"resourceType": "Coverage", "beneficiary": {"reference": "Patient/p-3"}}, "p-3"),
    ({"resourceType": "Observation", "subject": {"reference": "Group/ward-7"}}, None),
    ({"resourceType": "Observation", "subject": {"reference": "#contained"}}, None),
    ({"resourceType": "Observation", "subject": {"display": "no reference"}}, None),
    ({"resourceType": "Organization", "id": "org-1"}, None),
    (["not", "a", "resource"], None),
])
def test_the_patient_key_of_a_resource(resource, key):
    assert patient_key_of(resource) == key


def test_a_reference_that_is_not_a_patient_gives_no_id():
    assert patient_id_of_reference("Practitioner/p-1") is None
    assert patient_id_of_reference(42) is None
    assert patient_id_of_reference("Patient/") is None


# ------------------------------------------------------------------ one patient = $assess


@pytest.fixture(scope="module")
def assessor():
    return get_assessor()


@pytest.mark.parametrize("stem", SINGLE_PATIENT)
def test_screening_a_patient_gives_the_assess_outputs(stem, assessor):
    resources, full_urls = _fixture(stem)
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    screen = screen_patient(patient["id"], resources, assessor, now=FIXTURE_NOW, full_urls=full_urls)
    golden = [r for r in _golden(stem) if r["resourceType"] in OUTPUT_TYPES]
    expected = [_as_ndjson_references(r, golden) for r in golden]
    actual = [r for kind in OUTPUT_TYPES for r in screen.outputs[kind]]
    assert sorted(actual, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])
    assert not any("urn:uuid:" in orjson.dumps(r).decode() for r in actual if stem.startswith("01"))


def test_the_summary_row_reads_the_assessment(assessor):
    resources, full_urls = _fixture("04-metastatic-esrd")
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    row = screen_patient(patient["id"], resources, assessor, now=FIXTURE_NOW, full_urls=full_urls).summary
    risk = next(r for r in _golden("04-metastatic-esrd") if r["resourceType"] == "RiskAssessment")
    leading = risk["prediction"][0]
    assert list(row) == list(SUMMARY_COLUMNS)
    assert (row["top_type"], row["top_grade"]) == (leading["outcome"]["coding"][0]["code"],
                                                   leading["qualitativeRisk"]["coding"][0]["code"])
    assert (row["top_type"], row["top_grade"]) == ("metastatic", "high")
    # the fixture's own calcium and phosphate (mg/dL), and their product
    calcium = _lab(resources, "17861-6")
    phosphate = _lab(resources, "2777-1")
    assert row["calcium"] == calcium["valueQuantity"]["value"]
    assert row["phosphate"] == phosphate["valueQuantity"]["value"]
    assert row["ca_x_p"] == pytest.approx(row["calcium"] * row["phosphate"], rel=0.02)
    assert row["ca_x_p"] > 70
    assert row["calcium_date"] == calcium["effectiveDateTime"][:10] == row["ca_x_p_date"]
    assert row["data_problems"] == 0
    proposed = [r for r in _golden("04-metastatic-esrd") if r["resourceType"] == "ServiceRequest"]
    assert len(row["missing_tests"]) == len(proposed)
    assert set(row["missing_tests"]) == {r["code"]["text"] for r in proposed}


def _lab(resources: list[dict], loinc: str) -> dict:
    return next(r for r in resources if r["resourceType"] == "Observation"
                and any(c["code"] == loinc for c in r["code"]["coding"]))


def test_a_patient_without_labs_has_empty_values_and_the_baseline_missing(assessor):
    resources, full_urls = _fixture("13-no-labs")
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    row = screen_patient(patient["id"], resources, assessor, now=FIXTURE_NOW, full_urls=full_urls).summary
    assert all(row[column] is None for column in ("calcium", "phosphate", "ca_x_p", "egfr", "calcium_date"))
    assert {"Calcium", "Phosphate"} <= set(row["missing_tests"])


def test_problems_name_the_source_line_and_the_element(assessor):
    resources, full_urls = _fixture("14-unknown-unit")
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    origins = [f"{r['resourceType']}.ndjson:{index + 1}" for index, r in enumerate(resources)]
    screen = screen_patient(patient["id"], resources, assessor, now=FIXTURE_NOW, full_urls=full_urls, origins=origins)
    assert screen.issues, "the unknown unit is a data problem"
    assert screen.summary["data_problems"] == len(screen.issues)
    unit_issue = next(i for i in screen.issues if "unit" in i["diagnostics"])
    assert unit_issue["source"] in origins and unit_issue["source"].startswith("Observation.ndjson:")
    assert unit_issue["location"].startswith("Observation.valueQuantity")
    assert unit_issue["patient_id"] == patient["id"]
    assert all(i["severity"] != "information" for i in screen.issues)
    assert "Bundle.entry" not in unit_issue["diagnostics"]


def test_a_patient_known_only_by_references_is_assessed_as_assess_would(assessor):
    resources, _ = _fixture("01-dystrophic-systemic-sclerosis")
    orphans = [r for r in resources if r["resourceType"] != "Patient"]
    screen = screen_patient("p-ssc-001", orphans, assessor, now=FIXTURE_NOW)
    run = assessor.assess({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in orphans]},
                          now=FIXTURE_NOW)
    assert [p.patient_reference for p in run.patients] == ["Patient/p-ssc-001"]
    assert screen.summary["top_type"] == run.patients[0].leading.type
    assert screen.outputs["RiskAssessment"][0]["subject"] == {"reference": "Patient/p-ssc-001"}


def test_resources_of_no_assessable_patient_are_reported(assessor):
    orphan = {"resourceType": "Observation", "id": "o-1", "status": "final", "subject": {"reference": "Group/g-1"},
              "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]}}
    screen = screen_patient("p-404", [orphan], assessor, now=FIXTURE_NOW, origins=["Observation.ndjson:9"])
    assert screen.summary["top_type"] is None and screen.summary["data_problems"] == len(screen.issues) >= 1
    assert any("p-404" in issue["diagnostics"] for issue in screen.issues)
    assert all(not screen.outputs[kind] for kind in OUTPUT_TYPES)


def test_a_summary_row_without_an_assessment():
    row = summary_row("p-9", None, 3)
    assert row == {**{column: None for column in SUMMARY_COLUMNS}, "patient_id": "p-9", "missing_tests": [],
                   "data_problems": 3}


# ------------------------------------------------------------------ outputs


def test_the_screen_writer_writes_valid_r4_and_matching_summaries(tmp_path, assessor):
    import pyarrow.parquet as pq

    with ScreenWriter(tmp_path, run_facts={"source": "fixtures"}) as writer:
        for stem in ("01-dystrophic-systemic-sclerosis", "04-metastatic-esrd", "14-unknown-unit"):
            resources, full_urls = _fixture(stem)
            patient = next(r for r in resources if r["resourceType"] == "Patient")
            writer.add(screen_patient(patient["id"], resources, assessor, now=FIXTURE_NOW, full_urls=full_urls))
        writer.add_issue({"severity": "error", "code": "structure", "diagnostics": "not JSON", "source": "x.ndjson:3"})
    for kind in OUTPUT_TYPES:
        lines = (tmp_path / f"{kind}.ndjson").read_bytes().splitlines()
        assert lines
        for line in lines:
            resource = orjson.loads(line)
            assert resource["resourceType"] == kind
            get_fhir_model_class(kind).model_validate(resource)
    with open(tmp_path / "summary.csv", encoding="utf-8", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    table = pq.read_table(tmp_path / "summary.parquet").to_pylist()
    assert [r["patient_id"] for r in csv_rows] == [r["patient_id"] for r in table] == [
        "p-ssc-001", "170cbf6b-56f0-50c0-b30f-2f94fc292362", next(
            r["id"] for r in _fixture("14-unknown-unit")[0] if r["resourceType"] == "Patient")]
    assert table[1]["top_grade"] == "high" and csv_rows[1]["top_grade"] == "high"
    assert float(csv_rows[1]["ca_x_p"]) == table[1]["ca_x_p"]
    assert csv_rows[1]["missing_tests"] == "; ".join(table[1]["missing_tests"])
    issues = [orjson.loads(line) for line in (tmp_path / "issues.ndjson").read_bytes().splitlines()]
    assert issues[-1]["source"] == "x.ndjson:3" and int(table[2]["data_problems"]) == len(issues) - 1
    assert (tmp_path / "report.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert not (tmp_path / ".parts").exists()


def test_an_unfinished_part_is_not_complete_and_cannot_be_assembled(tmp_path):
    part = PartWriter(tmp_path / "part-0")
    part.add_issue({"diagnostics": "x"})
    part.abandon()
    assert part_counts(tmp_path / "part-0") is None
    with pytest.raises(ValueError):
        assemble([tmp_path / "part-0"], tmp_path / "out")
    again = PartWriter(tmp_path / "part-0")  # an earlier attempt is thrown away
    assert again.finish() == {}
    assert part_counts(tmp_path / "part-0") == {}
    assert (tmp_path / "part-0" / "issues.ndjson").read_bytes() == b""


def test_the_same_parts_assemble_to_the_same_bytes(tmp_path):
    screen_rows = [summary_row(f"p-{n}", None, n) for n in range(3)]
    parts = []
    for index, row in enumerate(screen_rows):
        part = PartWriter(tmp_path / f"part-{index}")
        from service.screening.patient_screen import PatientScreen

        part.add(PatientScreen(row["patient_id"], summary=row))
        part.finish()
        parts.append(tmp_path / f"part-{index}")
    assemble(parts, tmp_path / "a")
    assemble(parts, tmp_path / "b")
    for name in ("summary.csv", "summary.parquet", "issues.ndjson", "RiskAssessment.ndjson", "report.html"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "summary.csv").read_text().splitlines()[1] == "p-0,,,,,,,,,,,,0"


def test_the_screening_core_does_not_import_flask():
    import subprocess
    import sys

    code = ("import sys, service.screening.patient_screen, service.screening.outputs; "
            "print('flask' in sys.modules or 'werkzeug' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
