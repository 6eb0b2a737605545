"""Each app created by `create_app` owns its rule library: settings and edits never leak between apps.

The story: an operator runs the shipped rules while a rule author tries a stricter Ca x P threshold
on a copy, in the same process (two apps, or a test run next to a service). Each must answer with
its own library and settings; an edited library takes effect in the next app built (a restart),
never half-way through a running one.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from tests.conftest import FIXTURES_DIR, PROJECT_ROOT, assess_fixture

SHIPPED_LIBRARY = PROJECT_ROOT / "service" / "knowledge" / "CalcinosisCutis.cql"
SHIPPED_THRESHOLD = """define "CaxP Threshold": 70 'mg2/dL2'"""
FIXTURE_INSTANT = "2026-11-15T09:00:00Z"


def _app(tmp_path: Path, name: str, **settings):
    from service import create_app

    return create_app({"EVALUATION_TIME": FIXTURE_INSTANT, "CDS_REQUIRE_JWT": False,
                       "CDS_FEEDBACK_DB": str(tmp_path / f"{name}.sqlite3"), **settings})


def _library_with_threshold(folder: Path, threshold: int) -> Path:
    """A copy of the shipped library whose only change is the Ca x P threshold."""
    text = SHIPPED_LIBRARY.read_text(encoding="utf-8")
    assert text.count(SHIPPED_THRESHOLD) == 1
    path = folder / "CalcinosisCutis.cql"
    path.write_text(text.replace(SHIPPED_THRESHOLD, f"""define "CaxP Threshold": {threshold} 'mg2/dL2'"""),
                    encoding="utf-8")
    return path


def _metastatic(app) -> tuple[str, str]:
    """(risk code, rationale) of the metastatic prediction for the ESRD patient (Ca x P 82.1 on 2026-11-09)."""
    body = orjson.loads(assess_fixture("04").read_bytes())
    response = app.test_client().post("/fhir/$assess", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    for entry in response.get_json()["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] != "RiskAssessment":
            continue
        for prediction in resource["prediction"]:
            if prediction["outcome"]["coding"][0]["code"] == "metastatic":
                return prediction["qualitativeRisk"]["coding"][0]["code"], prediction["rationale"]
    raise AssertionError("no metastatic prediction in the answer")


def _patient_view_card(app) -> dict:
    request = json.loads((FIXTURES_DIR / "cds-hooks" / "patient-view-request.json").read_text(encoding="utf-8"))
    response = app.test_client().post("/cds-services/calcinosis-patient-view", json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    (card,) = response.get_json()["cards"]
    return card


def test_two_apps_with_different_lookbacks_grade_the_same_patient_each_by_its_own(tmp_path):
    # Results of 2026-11-09 assessed on 2026-11-15: current within a year, not within 3 days.
    year = _app(tmp_path, "year", LOOKBACK_DAYS=365)
    three_days = _app(tmp_path, "three-days", LOOKBACK_DAYS=3)

    risk, rationale = _metastatic(three_days)
    assert risk == "moderate"
    assert "no usable calcium result within 3 days" in rationale
    assert "Ca x P cannot be computed" in rationale

    risk, rationale = _metastatic(year)  # the app built first is not changed by the one built after it
    assert risk == "high"
    assert "Ca 10.8 mg/dL on 2026-11-09 (H)" in rationale
    assert "Ca x P 82.1 mg2/dL2 exceeds 70 mg2/dL2" in rationale


def test_an_app_on_an_edited_copy_of_the_library_uses_its_threshold_and_the_shipped_app_keeps_70(tmp_path):
    shipped = _app(tmp_path, "shipped")
    edited = _app(tmp_path, "edited", RULE_LIBRARY=str(_library_with_threshold(tmp_path, 90)))

    assert "Ca x P 82.1 mg2/dL2 does not exceed 90 mg2/dL2" in _metastatic(edited)[1]
    assert "Ca x P 82.1 mg2/dL2 exceeds 70 mg2/dL2" in _metastatic(shipped)[1]


def test_an_edit_to_the_library_file_reaches_the_next_app_built_not_the_running_one(tmp_path):
    # The same path before and after the edit: nothing keyed by the path may hand back the old rules.
    library = _library_with_threshold(tmp_path, 70)
    running = _app(tmp_path, "running", RULE_LIBRARY=str(library))
    assert "exceeds 70 mg2/dL2" in _metastatic(running)[1]

    _library_with_threshold(tmp_path, 90)
    restarted = _app(tmp_path, "restarted", RULE_LIBRARY=str(library))

    assert "Ca x P 82.1 mg2/dL2 does not exceed 90 mg2/dL2" in _metastatic(restarted)[1]
    assert "Ca x P 82.1 mg2/dL2 exceeds 70 mg2/dL2" in _metastatic(running)[1]


def test_the_cds_hooks_cards_come_from_the_apps_own_library(tmp_path):
    # The patient-view fixture: Ca 11.2 and P 7.3 mg/dL on 2026-11-01, Ca x P 81.8.
    library = _library_with_threshold(tmp_path, 70)
    shipped_card = _patient_view_card(_app(tmp_path, "first", RULE_LIBRARY=str(library)))
    _library_with_threshold(tmp_path, 90)
    edited_card = _patient_view_card(_app(tmp_path, "second", RULE_LIBRARY=str(library)))

    assert shipped_card["summary"] == "Metastatic calcinosis likely: Ca x P 81.8 mg2/dL2"
    assert "Ca x P 81.8 mg2/dL2 exceeds 70 mg2/dL2" in shipped_card["detail"]
    assert "| Ca x P | 81.8 mg2/dL2 (H) | 2026-11-01 |" in shipped_card["detail"]
    # Under 90 the product is no longer the leading finding, and its row reads normal.
    assert edited_card["summary"] == "Metastatic calcinosis likely: Ca 11.2 mg/dL (H)"
    assert "exceeds 70" not in edited_card["detail"]
    assert "| Ca x P | 81.8 mg2/dL2 (N) | 2026-11-01 |" in edited_card["detail"]


def test_the_cds_hooks_cards_follow_the_apps_own_lookback(tmp_path):
    year = _patient_view_card(_app(tmp_path, "year", LOOKBACK_DAYS=365))
    week = _patient_view_card(_app(tmp_path, "week", LOOKBACK_DAYS=7))

    assert year["summary"] == "Metastatic calcinosis likely: Ca x P 81.8 mg2/dL2"
    assert "Ca x P 81.8" not in week["summary"]
    assert week["detail"].startswith("**Why metastatic (moderate):** No calcium or phosphate result on file: "
                                     "unknown, not normal.")
    assert year["detail"].startswith("**Why metastatic (high):** Calcium and phosphate are high")


def test_an_edited_bibliography_reaches_the_next_app_built(tmp_path):
    shipped = json.loads((PROJECT_ROOT / "service" / "knowledge" / "bibliography.json").read_text(encoding="utf-8"))
    path = tmp_path / "bibliography.json"
    path.write_text(json.dumps(shipped), encoding="utf-8")
    before = _app(tmp_path, "before", BIBLIOGRAPHY=str(path))
    text = json.dumps(shipped).replace("Le C, Bedocs PM", "Le C, Bedocs PM (edited)")
    path.write_text(text, encoding="utf-8")
    after = _app(tmp_path, "after", BIBLIOGRAPHY=str(path))

    def citations(app) -> str:
        return _app_answer_text(app)

    assert "Bedocs PM (edited)" in citations(after)
    assert "Bedocs PM (edited)" not in citations(before)


def _app_answer_text(app) -> str:
    body = orjson.loads(assess_fixture("04").read_bytes())
    response = app.test_client().post("/fhir/$assess", json=body)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_an_app_refuses_an_assessor_built_for_other_settings(tmp_path):
    import pytest

    from service import create_app
    from service.pipeline.assess import Assessor
    from service.config import load_config
    from service.errors import ConfigError

    other = Assessor(load_config({"LOOKBACK_DAYS": 30}))
    with pytest.raises(ConfigError, match="LOOKBACK_DAYS"):
        create_app({"LOOKBACK_DAYS": 365, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3")}, assessor=other)
