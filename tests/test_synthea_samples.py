"""Real Synthea R4 bundles (background material beside the project) ingest and normalize cleanly."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import pytest

from service.cql_like.values import Code
from service.pipeline.ingest import read_bundle
from service.pipeline.normalize import build_facts
from service.pipeline.selection import default_selection

SHARED = Path(os.environ.get("CALCINOSIS_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
SAMPLES = SHARED / "fhir-samples" / "synthea"
NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)
LOINC = "http://loinc.org"

pytestmark = pytest.mark.skipif(
    not SAMPLES.is_dir(),
    reason=f"Synthea sample bundles not found at {SAMPLES} (background material outside the repository; "
           "set CALCINOSIS_SHARED_DIR to its location)")

SAMPLE_FILES = sorted(SAMPLES.glob("*.json")) if SAMPLES.is_dir() else []
CKD_SAMPLES = [path for path in SAMPLE_FILES if path.name.startswith(("Coleman_Ortiz", "Dirk_Kuhlman"))]


def in_bundle_count(bundle, resource_type):
    return sum(1 for entry in bundle["entry"] if entry["resource"]["resourceType"] == resource_type)


@lru_cache(maxsize=None)
def _facts(path: Path):
    bundle = json.loads(path.read_text(encoding="utf-8"))
    ingested = read_bundle(bundle)
    assert len(ingested.patients) == 1
    return bundle, ingested, build_facts(ingested.patients[0], now=NOW)


def test_all_four_samples_are_present():
    assert len(SAMPLE_FILES) == 4


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.name.split("_")[0])
def test_every_kept_resource_validates_as_r4b_and_nothing_is_lost(path):
    bundle, ingested, facts = _facts(path)
    assert ingested.bundle_type == "transaction"
    assert ingested.patients[0].issues == ()
    (summary,) = ingested.issues  # claims, encounters ... are counted, not silently dropped
    assert (summary.severity, summary.location) == ("information", "Bundle.entry")
    assert summary.diagnostics.startswith("not assessed (not read by the rules): ")
    assert f"Claim {in_bundle_count(bundle, 'Claim')}" in summary.diagnostics
    group = ingested.patients[0]
    assert group.patient is not None
    in_bundle = Counter(entry["resource"]["resourceType"] for entry in bundle["entry"])
    kept = Counter(resource.resource_type for resource in group.resources)
    for resource_type in ("Condition", "MedicationRequest", "Procedure"):
        assert kept[resource_type] == in_bundle[resource_type], resource_type
    # Observations: those whose code the rules read are kept, every other one is counted in the summary.
    selection = default_selection()
    read = sum(1 for entry in bundle["entry"] if entry["resource"]["resourceType"] == "Observation"
               and selection.reads_observation(entry["resource"]))
    assert 0 < kept["Observation"] == read < in_bundle["Observation"]
    assert f"Observation {in_bundle['Observation'] - read}" in summary.diagnostics
    assert "Claim" not in kept and "Encounter" not in kept
    assert len(facts.records("Condition")) == in_bundle["Condition"]


@pytest.mark.parametrize("path", CKD_SAMPLES, ids=lambda path: path.name.split("_")[0])
def test_blood_calcium_and_creatinine_are_mapped_and_converted(path):
    _, _, facts = _facts(path)
    calcium = facts.retrieve("Observation", frozenset({Code("49765-1", LOINC)}))
    creatinine = facts.retrieve("Observation", frozenset({Code("38483-4", LOINC)}))
    assert calcium and creatinine
    assert {record.get("analyte") for record in calcium} == {"calcium"}
    assert {record.get("analyte") for record in creatinine} == {"creatinine"}
    assert all(record.get("value").unit == "mg/dL" for record in calcium + creatinine)
    assert all(record.get("referenceRangeSource") == "default adult" for record in calcium)


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.name.split("_")[0])
def test_there_is_no_phosphate_in_synthea(path):
    _, _, facts = _facts(path)
    analytes = {record.get("analyte") for record in facts.records("Observation")}
    assert "phosphate" not in analytes


@pytest.mark.parametrize("path", CKD_SAMPLES, ids=lambda path: path.name.split("_")[0])
def test_egfr_reported_in_plain_ml_per_min_is_read_per_1_73_m2_with_a_note(path):
    # Synthea writes some MDRD eGFR results (33914-3, '/1.73 sq M' in its name) in 'mL/min': they are
    # used as mL/min/1.73 m2, and an information issue at each unit says so.
    bundle, _, facts = _facts(path)
    sent = [entry["resource"] for entry in bundle["entry"] if entry["resource"]["resourceType"] == "Observation"
            and any(coding.get("code") == "33914-3" for coding in entry["resource"]["code"]["coding"])]
    bare = [resource for resource in sent if resource.get("valueQuantity", {}).get("code") == "mL/min"]
    egfr = [record for record in facts.records("Observation") if record.get("analyte") == "egfr"]
    assert bare and len(egfr) == len(sent)
    assert all(record.get("value").unit == "mL/min/{1.73_m2}" for record in egfr)
    notes = [issue for issue in facts.issues if "read as mL/min/1.73 m2" in issue.diagnostics]
    assert len(notes) == len(bare)
    assert all(issue.severity == "information" and issue.location.endswith(".valueQuantity.code") for issue in notes)
    assert not [issue for issue in facts.issues if issue.code == "code-invalid"]
    assert {issue.code for issue in facts.issues} <= {"informational", "conflict"}


def test_two_panels_at_the_same_instant_that_disagree_are_both_kept_and_reported():
    # Dirk's record holds two metabolic panels filed at the same second with different values.
    (path,) = [path for path in CKD_SAMPLES if path.name.startswith("Dirk")]
    _, _, facts = _facts(path)
    conflicts = [issue for issue in facts.issues if issue.code == "conflict"]
    calcium = next(issue for issue in conflicts if issue.diagnostics.startswith("calcium:"))
    assert calcium.severity == "warning"
    assert calcium.location == "Bundle.entry[153].resource"
    assert "Bundle.entry[153].resource" in calcium.diagnostics and "Bundle.entry[169].resource" in calcium.diagnostics
    same_instant = [record for record in facts.records("Observation") if record.get("analyte") == "calcium"
                    and record.get("effective") == datetime(2019, 11, 12, 20, 32, 26, tzinfo=timezone.utc)]
    assert len(same_instant) == 2
