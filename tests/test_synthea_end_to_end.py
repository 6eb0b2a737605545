"""Real Synthea exports are assessed without error, validly, and the missing phosphate is proposed."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from conftest import FIXTURE_NOW, shared_dir
from service.pipeline.assess import assess_bundle
from service.fhir_outputs.result_bundle import build_result_bundle

SAMPLES_DIR = shared_dir() / "fhir-samples" / "synthea"
SAMPLES = sorted(SAMPLES_DIR.glob("*.json")) if SAMPLES_DIR.is_dir() else []

pytestmark = pytest.mark.skipif(
    not SAMPLES, reason=f"Synthea samples not found in {SAMPLES_DIR} (set CALCINOSIS_SHARED_DIR to the shared folder)")


@pytest.fixture(scope="module")
def results():
    return {path.stem: build_result_bundle(*_run(path)) for path in SAMPLES}


def _run(path):
    run = assess_bundle(orjson.loads(path.read_bytes()), now=FIXTURE_NOW)
    return run.patients, run.issues


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem.split("_")[0])
def test_synthea_bundle_is_assessed_into_valid_r4(results, path):
    bundle = results[path.stem]
    get_fhir_model_class("Bundle").model_validate(bundle)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("RiskAssessment") == 1
    assert kinds.count("CarePlan") == 1
    for entry in bundle["entry"]:
        get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem.split("_")[0])
def test_synthea_has_no_phosphate_so_phosphate_is_proposed(results, path):
    proposed = {e["resource"]["code"]["coding"][0]["code"] for e in results[path.stem]["entry"]
                if e["resource"]["resourceType"] == "ServiceRequest"}
    assert "2777-1" in proposed


def _day_after_latest_lab(bundle: dict) -> datetime:
    dates = [e["resource"].get("effectiveDateTime") for e in bundle["entry"]
             if e["resource"]["resourceType"] == "Observation"]
    latest = max(datetime.fromisoformat(d.replace("Z", "+00:00")) for d in dates if d)
    return latest + timedelta(days=1)


def test_ckd_patients_have_their_blood_calcium_and_creatinine_used():
    """Synthea's labs are years old: assess as of the day after the last one so they are current."""
    ckd = [p for p in SAMPLES if p.stem.split("_")[0] in {"Coleman", "Dirk"}]
    assert ckd, "the CKD samples are expected among the Synthea bundles"
    for path in ckd:
        bundle = orjson.loads(path.read_bytes())
        patients = assess_bundle(bundle, now=_day_after_latest_lab(bundle)).patients
        used = {v.analyte for v in patients[0].values_used}
        assert "creatinine" in used or "egfr" in used, used
        assert "calcium" in used, used
