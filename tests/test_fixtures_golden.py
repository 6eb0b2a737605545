"""Every fixture bundle is assessed exactly as its golden output says, and clinically as expected.

Golden files sit beside their input as `<name>.expected.json` and are compared strictly.
After a deliberate change, regenerate them with `CALCINOSIS_UPDATE_GOLDEN=1 pytest
tests/test_fixtures_golden.py` and review the diff like code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from conftest import FIXTURE_NOW, FIXTURES_DIR
from service.pipeline.assess import assess_bundle
from service.fhir_outputs.result_bundle import build_result_bundle

ASSESS_DIR = FIXTURES_DIR / "assess"
INPUTS = sorted(p for p in ASSESS_DIR.glob("*.json")
                if not p.name.endswith(".expected.json") and p.name != "MANIFEST.json")
MANIFEST = json.loads((ASSESS_DIR / "MANIFEST.json").read_text()) if (ASSESS_DIR / "MANIFEST.json").exists() else {"fixtures": []}
UPDATE = os.environ.get("CALCINOSIS_UPDATE_GOLDEN") == "1"


def _assess(path: Path) -> dict:
    run = assess_bundle(orjson.loads(path.read_bytes()), now=FIXTURE_NOW)
    return build_result_bundle(run.patients, run.issues)


_results: dict[Path, dict] = {}


def result_for(path: Path) -> dict:
    if path not in _results:
        _results[path] = _assess(path)
    return _results[path]


def _golden_path(path: Path) -> Path:
    return path.with_name(path.stem + ".expected.json")


def test_there_are_at_least_twelve_fixtures():
    assert len(INPUTS) >= 12


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_fixture_matches_its_golden_output(path):
    actual = result_for(path)
    golden = _golden_path(path)
    rendered = orjson.dumps(actual, option=orjson.OPT_INDENT_2) + b"\n"
    if UPDATE:
        golden.write_bytes(rendered)
    assert golden.exists(), f"no golden file {golden.name}: run with CALCINOSIS_UPDATE_GOLDEN=1 and review it"
    assert json.loads(golden.read_bytes()) == json.loads(rendered)


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_every_output_resource_is_valid_fhir_r4(path):
    bundle = result_for(path)
    get_fhir_model_class("Bundle").model_validate(bundle)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def _patient_resources(bundle: dict, references: set[str]) -> dict[str, list[dict]]:
    """The output resources about one patient, however the input referred to it."""
    found: dict[str, list[dict]] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        subject = resource.get("subject", {}).get("reference")
        if subject in references:
            found.setdefault(resource["resourceType"], []).append(resource)
    return found


def _expectation_cases():
    for fixture in MANIFEST["fixtures"]:
        for patient in fixture.get("patients", []):
            yield pytest.param(fixture["file"], patient, id=f"{Path(fixture['file']).stem}:{patient['reference']}")


@pytest.mark.parametrize("file, patient", list(_expectation_cases()))
def test_fixture_meets_its_clinical_expectation(file, patient):
    bundle = result_for(ASSESS_DIR / file)
    resources = _patient_resources(bundle, {patient["reference"], patient.get("fullUrl")} - {None})
    assert resources.get("RiskAssessment"), f"no RiskAssessment for {patient['reference']}"
    risk = resources["RiskAssessment"][0]
    predictions = {p["outcome"]["coding"][0]["code"]: p["qualitativeRisk"]["coding"][0]["code"]
                   for p in risk["prediction"]}
    expect = patient["expect"]
    if "leading" in expect:
        leading = risk["prediction"][0]["outcome"]["coding"][0]["code"]
        assert leading in expect["leading"].split("|"), risk["prediction"][0].get("rationale")
    for type_code, allowed in expect.get("risk", {}).items():
        assert predictions[type_code] in allowed.split("|"), (type_code, predictions[type_code])
    # A test proposed by name only (no verified code) carries code.text and no coding.
    proposed = {coding["code"] for r in resources.get("ServiceRequest", []) for coding in r["code"].get("coding", [])}
    for code in expect.get("recommended_includes", []):
        assert code in proposed, f"{code} should be proposed"
    for code in expect.get("recommended_excludes", []):
        assert code not in proposed, f"{code} has a current result and must not be proposed"
    unconfirmed = {a["detail"]["code"]["coding"][0]["code"] for plan in resources.get("CarePlan", [])
                   for a in plan.get("activity", []) if "detail" in a}
    for code in expect.get("unconfirmed_includes", []):
        assert code in unconfirmed, f"{code} should be listed as could not confirm"
    if expect.get("issues_include"):
        # Each expected issue lists alternative phrasings separated by "|", matched without case.
        outcome_text = orjson.dumps([e["resource"] for e in bundle["entry"]
                                     if e["resource"]["resourceType"] == "OperationOutcome"]).decode().lower()
        for alternatives in expect["issues_include"]:
            assert any(a.lower() in outcome_text for a in alternatives.split("|")), (
                f"an OperationOutcome should mention one of {alternatives!r}")


def _grades(path: Path) -> list[tuple[str, str]]:
    bundle = result_for(path)
    return [(p["outcome"]["coding"][0]["code"], p["qualitativeRisk"]["coding"][0]["code"])
            for e in bundle["entry"] if e["resource"]["resourceType"] == "RiskAssessment"
            for p in e["resource"]["prediction"]]


def _pairs():
    """Fixtures named `NN-<slug>` and `MM-<slug>-si` hold the same patient in both unit systems."""
    by_slug = {p.stem.split("-", 1)[1]: p for p in INPUTS if "-" in p.stem}
    for slug, path in sorted(by_slug.items()):
        if slug + "-si" in by_slug:
            yield pytest.param(path, by_slug[slug + "-si"], id=slug)


def test_there_are_unit_system_pairs():
    assert len(list(_pairs())) >= 2


@pytest.mark.parametrize("conventional, si", list(_pairs()))
def test_same_patient_in_si_units_gets_the_same_grades(conventional, si):
    assert _grades(conventional) == _grades(si)
