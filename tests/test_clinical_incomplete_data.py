"""Data that could not be read is not data that is absent.

When a search was read only in part (a CDS Hooks prefetch that is only the first page of its
search, a searchset Bundle with a `next` link or a `total` above its entries) or a resource was
skipped (it fails R4 validation, or a result of a known test has a unit or value that cannot be
used), the assessment must not propose as missing a test whose result may sit among what was not
read, and no rationale may say "not on file" / "no usable ... result" for data it never saw.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from service.cql_like.values import Record
from tests.test_knowledge_scenarios import (ICD10CM, LOINC, NOW, SNOMED, Facts, _concept, _engine_library, _LIBRARY,
                                            calcium, condition, obs, patient, phosphate)

CALCIUM, PHOSPHATE, PTH, VITAMIN_D, ALBUMIN = "17861-6", "2777-1", "2731-8", "62292-8", "1751-7"
ASSESS = "/fhir/$assess"


# ---- the library, on hand-built facts -----------------------------------------------------

def data_gap(resource_type: str, reason: str = "search-incomplete", *, code: str | None = None,
             days_ago: int | None = None, location: str = "prefetch.labs") -> Record:
    """What the service delivers for data it could not read (no source: a gap is no input resource)."""
    return Record("DataGap", {
        "resourceType": resource_type, "reason": reason, "location": location,
        "code": _concept(LOINC, code, None) if code else None,
        "effective": NOW - timedelta(days=days_ago) if days_ago is not None else None,
    })


def evaluate(facts: Facts) -> dict[str, Any]:
    if not _LIBRARY:
        _LIBRARY.append(_engine_library())
    return _LIBRARY[0].evaluate(facts, now=NOW).values_only()


def rationales(out: dict[str, Any]) -> dict[str, str]:
    return {name: out[name]["rationale"] for name in ("Dystrophic", "Metastatic", "Idiopathic", "Iatrogenic",
                                                       "Calciphylaxis")}


def codes(rows: list[dict[str, Any]]) -> list[str]:
    return [row["code"] for row in rows]


def unconfirmed(out: dict[str, Any], code: str) -> dict[str, Any]:
    (row,) = [row for row in out["Unconfirmed Tests"] if row["code"] == code]
    return row


def crest_with_a_partly_read_lab_search() -> Facts:
    """Limited systemic sclerosis; the laboratory search was read only in part and held no calcium or phosphate."""
    return Facts([condition(ICD10CM, "M34.1", "CR(E)ST syndrome"),
                  obs(PTH, "41", "pg/mL", low="15", high="65"),
                  data_gap("Observation")], patient())


def test_a_partly_read_lab_search_proposes_no_lab_test_as_missing_but_lists_it_as_unconfirmed():
    out = evaluate(crest_with_a_partly_read_lab_search())
    recommended = codes(out["Recommended Tests"])
    assert CALCIUM not in recommended and PHOSPHATE not in recommended and VITAMIN_D not in recommended
    assert {CALCIUM, PHOSPHATE, VITAMIN_D, ALBUMIN} <= set(codes(out["Unconfirmed Tests"]))
    assert PTH not in codes(out["Unconfirmed Tests"])  # its result was read: available, not unconfirmed
    row = unconfirmed(out, CALCIUM)
    assert row["reason"] == "could not confirm: the laboratory search was only partly read"
    assert row["purpose"].startswith("Serum calcium for metastatic calcification")
    assert row["group"] == "baseline" and row["system"] == LOINC


def test_a_partly_read_lab_search_never_says_no_usable_calcium_result():
    out = evaluate(crest_with_a_partly_read_lab_search())
    assert out["Dystrophic"]["risk"] == "moderate"  # tissue damage, labs unknown: unknown is not normal
    for name, text in rationales(out).items():
        assert "no usable calcium result" not in text, name
        assert "no usable phosphate result" not in text, name
    dystrophic = out["Dystrophic"]["rationale"]
    assert "no calcium result among the results read (the laboratory search was incomplete)" in dystrophic
    assert "no phosphate result among the results read (the laboratory search was incomplete)" in dystrophic
    assert "calcium and phosphate are unknown, not normal" in dystrophic


def test_a_partly_read_lab_search_gets_one_note_naming_the_analytes_and_no_baseline_claim():
    out = evaluate(crest_with_a_partly_read_lab_search())
    gap_notes = [n for n in out["Notes"] if "only partly read" in n]
    assert len(gap_notes) == 1
    note = gap_notes[0]
    for analyte in ("calcium", "phosphate", "albumin", "PTH", "25-OH vitamin D", "creatinine", "eGFR"):
        assert analyte in note
    assert "could not confirm" in note
    assert not any("the baseline panel is recommended" in n for n in out["Notes"])
    assert {"calcium", "phosphate", "pth", "egfr"} <= set(out["Incomplete Analytes"])


def test_a_value_read_from_a_partly_read_search_is_shown_as_possibly_not_the_latest():
    out = evaluate(Facts([condition(ICD10CM, "M34.1", "CR(E)ST syndrome"), calcium("9.4", low="8.5", high="10.2"),
                          data_gap("Observation")], patient()))
    assert CALCIUM not in codes(out["Recommended Tests"]) + codes(out["Unconfirmed Tests"])  # available
    assert PHOSPHATE in codes(out["Unconfirmed Tests"])
    dystrophic = out["Dystrophic"]["rationale"]
    assert "Ca 9.4 mg/dL on" in dystrophic
    assert "The laboratory search was incomplete: results not read may be more recent." in dystrophic


def test_a_complete_record_keeps_its_wording_and_proposes_the_missing_tests():
    out = evaluate(Facts([condition(ICD10CM, "M34.1", "CR(E)ST syndrome")], patient()))
    assert out["Unconfirmed Tests"] == [] and out["Incomplete Analytes"] == []
    assert {CALCIUM, PHOSPHATE} <= set(codes(out["Recommended Tests"]))
    assert "no usable calcium result within 1 year" in out["Dystrophic"]["rationale"]
    assert "No connective tissue disease" not in out["Dystrophic"]["rationale"]
    assert not any("partly read" in n or "could not be read" in n for n in out["Notes"])


def test_a_partly_read_condition_search_never_says_a_condition_is_not_on_file():
    out = evaluate(Facts([calcium("9.4", low="8.5", high="10.2"), phosphate("3.5", low="2.5", high="4.5"),
                          data_gap("Condition", location="prefetch.conditions")], patient()))
    texts = rationales(out)
    assert ("No connective tissue disease or other tissue damage among the conditions read "
            "(the condition search was incomplete).") in texts["Dystrophic"]
    assert "No skin necrosis or ulceration among the conditions read (the condition search was incomplete)." \
        in texts["Calciphylaxis"]
    assert ("No tissue damage, iatrogenic or metastatic cause among the conditions, medications, procedures and "
            "results read (the condition search was incomplete) and calcium and phosphate are normal.") in texts["Idiopathic"]
    for name, text in texts.items():
        # The kidney sentence of calciphylaxis is worded by the kidney rules ("Absent Phrase" is theirs to call).
        claims = [s for s in re.findall(r"No [^.]*? on file", text) if not s.startswith("No chronic kidney disease")]
        assert claims == [], (name, claims)
    assert PTH in codes(out["Recommended Tests"])  # the lab search was complete: missing tests are still proposed
    assert any("the condition search was only partly read" in n for n in out["Notes"])


def test_a_partly_read_medication_search_never_says_no_iv_calcium_on_file():
    out = evaluate(Facts([calcium("9.4"), phosphate("3.5"),
                          data_gap("MedicationRequest", location="prefetch.medications")], patient()))
    iatrogenic = out["Iatrogenic"]["rationale"]
    assert "on file" not in iatrogenic
    assert "the medication search was incomplete" in iatrogenic
    assert out["Iatrogenic"]["risk"] == "negligible"


def test_a_calcium_result_skipped_for_its_unit_makes_calcium_unconfirmed_not_missing():
    out = evaluate(Facts([condition(ICD10CM, "M34.1", "CR(E)ST syndrome"), phosphate("3.5", low="2.5", high="4.5"),
                          data_gap("Observation", "resource-skipped", code=CALCIUM, days_ago=3,
                                   location="Bundle.entry[2].resource")], patient()))
    assert CALCIUM not in codes(out["Recommended Tests"])
    row = unconfirmed(out, CALCIUM)
    assert row["reason"] == "could not confirm: 1 calcium result within 1 year could not be read"
    assert PHOSPHATE not in codes(out["Unconfirmed Tests"]) and PHOSPHATE not in codes(out["Recommended Tests"])
    assert PTH in codes(out["Recommended Tests"])  # no PTH result was skipped: still proposed as missing
    dystrophic = out["Dystrophic"]["rationale"]
    assert "no usable calcium result" not in dystrophic
    assert "calcium unknown: 1 calcium result within 1 year could not be read" in dystrophic
    assert out["Incomplete Analytes"] == ["calcium"]
    assert any("1 calcium result within 1 year could not be read" in n for n in out["Notes"])


def test_a_skipped_calcium_older_than_the_lookback_changes_nothing():
    out = evaluate(Facts([phosphate("3.5", low="2.5", high="4.5"),
                          data_gap("Observation", "resource-skipped", code=CALCIUM, days_ago=800)], patient()))
    assert CALCIUM in codes(out["Recommended Tests"]) and out["Unconfirmed Tests"] == []
    assert "no usable calcium result within 1 year" in out["Metastatic"]["rationale"]


def test_a_skipped_calcium_later_than_the_one_shown_is_named_in_the_lab_summary():
    out = evaluate(Facts([calcium("9.4", days_ago=20), phosphate("3.5"),
                          data_gap("Observation", "resource-skipped", code=CALCIUM, days_ago=2)], patient()))
    assert out["Unconfirmed Tests"] == []  # a calcium result was read: the test is available
    assert "Could not be read: 1 calcium result; a value shown may not be the latest." in out["Metastatic"]["rationale"]


def test_an_order_alert_does_not_call_calcium_absent_when_the_lab_search_was_partly_read():
    order = Record("MedicationRequest", {
        "id": "mr1", "code": _concept(None, None, "calcium gluconate 100 mg/ml injection"), "status": "draft",
        "authoredOn": NOW - timedelta(hours=1), "name": "calcium gluconate 100 mg/ml injection",
        "route": _concept(SNOMED, "47625008", "Intravenous route")}, source="MedicationRequest/mr1")
    out = evaluate(Facts([order, data_gap("Observation")], patient()))
    (alert,) = out["Order Alerts"]
    assert "no usable calcium" not in alert["message"]
    assert "no calcium result among the results read (the laboratory search was incomplete)" in alert["message"]


# ---- $assess: a searchset that says it is incomplete ----------------------------------------

def _resource(kind: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": kind, **fields}


def _lab(oid: str, code: str, value: float, unit: str, day: str = "2026-11-12") -> dict[str, Any]:
    return _resource("Observation", id=oid, status="final",
                     code={"coding": [{"system": LOINC, "code": code}]},
                     subject={"reference": "Patient/pg-1"}, effectiveDateTime=f"{day}T08:00:00Z",
                     valueQuantity={"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit})


def _searchset(*, next_link: bool, total: int | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle", "type": "searchset",
        "link": [{"relation": "self", "url": "https://ehr.example.org/fhir/Observation?patient=pg-1&_include=Observation:patient"}],
        "entry": [
            {"fullUrl": "https://ehr.example.org/fhir/Observation/pth-1", "search": {"mode": "match"},
             "resource": _lab("pth-1", PTH, 41, "pg/mL")},
            {"fullUrl": "https://ehr.example.org/fhir/Patient/pg-1", "search": {"mode": "include"},
             "resource": _resource("Patient", id="pg-1", gender="female", birthDate="1968-03-02")},
        ],
    }
    if next_link:
        bundle["link"].append({"relation": "next", "url": "https://ehr.example.org/fhir/Observation?patient=pg-1&page=2"})
    if total is not None:
        bundle["total"] = total
    return bundle


@pytest.fixture
def fixed_client(tmp_path):
    from service import create_app

    app = create_app({"EVALUATION_TIME": "2026-11-15T09:00:00Z", "CDS_FEEDBACK_DB": str(tmp_path / "fb.sqlite3")})
    return app.test_client()


def _assess(client, bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    response = client.post(ASSESS, data=json.dumps(bundle), content_type="application/fhir+json")
    assert response.status_code == 200, response.get_data(as_text=True)
    result = response.get_json()
    get_fhir_model_class("Bundle").model_validate(result)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in result["entry"]:
        get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])
        by_type.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    return by_type


def _proposed(by_type: dict[str, list[dict[str, Any]]]) -> set[str]:
    return {r["code"]["coding"][0]["code"] for r in by_type.get("ServiceRequest", [])}


def _unconfirmed_activities(by_type: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    (plan,) = by_type["CarePlan"]
    return {a["detail"]["code"]["coding"][0]["code"]: a["detail"] for a in plan.get("activity", []) if "detail" in a}


@pytest.mark.parametrize("next_link, total", [(True, None), (False, 7)], ids=["next-link", "total-above-entries"])
def test_assess_on_an_incomplete_searchset_proposes_no_lab_test_as_missing(fixed_client, next_link, total):
    by_type = _assess(fixed_client, _searchset(next_link=next_link, total=total))
    proposed = _proposed(by_type)
    assert CALCIUM not in proposed and PHOSPHATE not in proposed and VITAMIN_D not in proposed
    activities = _unconfirmed_activities(by_type)
    assert {CALCIUM, PHOSPHATE, VITAMIN_D} <= set(activities)
    calcium_activity = activities[CALCIUM]
    assert calcium_activity["status"] == "not-started"
    assert calcium_activity["statusReason"]["text"] == "could not confirm: the laboratory search was only partly read"
    assert calcium_activity["description"].startswith("Could not confirm")
    (plan,) = by_type["CarePlan"]
    assert "Could not confirm as missing" in plan["description"]
    (risk,) = by_type["RiskAssessment"]
    for prediction in risk["prediction"]:
        assert "no usable calcium result" not in prediction.get("rationale", "")
    assert any("only partly read" in note["text"] for note in risk.get("note", []))
    outcome_text = json.dumps(by_type.get("OperationOutcome", [])).lower()
    assert "searchset" in outcome_text and "not taken as absent" in outcome_text


def test_assess_on_a_complete_searchset_still_proposes_the_missing_tests(fixed_client):
    by_type = _assess(fixed_client, _searchset(next_link=False, total=1))
    assert {CALCIUM, PHOSPHATE} <= _proposed(by_type)
    assert _unconfirmed_activities(by_type) == {}


def test_assess_with_a_calcium_result_that_fails_r4_validation_does_not_propose_calcium(fixed_client):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:6a0b7f0e-4b8c-4a57-9d1b-5b3f5f0b7a01",
         "resource": _resource("Patient", id="pg-1", gender="female", birthDate="1968-03-02")},
        {"resource": dict(_lab("ca-bad", CALCIUM, 9.4, "mg/dL"), interpretation={"text": "N"})},  # not a list
        {"resource": _lab("p-1", PHOSPHATE, 3.5, "mg/dL")},
    ]}
    by_type = _assess(fixed_client, bundle)
    assert "not a valid R4 Observation" in json.dumps(by_type["OperationOutcome"])
    assert CALCIUM not in _proposed(by_type) and PTH in _proposed(by_type)
    assert _unconfirmed_activities(by_type)[CALCIUM]["statusReason"]["text"] == (
        "could not confirm: 1 calcium result within 365 days could not be read")


def test_assess_with_a_calcium_in_an_unknown_unit_does_not_propose_calcium(fixed_client):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": _resource("Patient", id="pg-1", gender="female", birthDate="1968-03-02")},
        {"resource": _lab("ca-unit", CALCIUM, 9.6, "mg/furlong")},
        {"resource": _lab("p-1", PHOSPHATE, 3.5, "mg/dL")},
    ]}
    by_type = _assess(fixed_client, bundle)
    assert CALCIUM not in _proposed(by_type)
    assert CALCIUM in _unconfirmed_activities(by_type)


# ---- CDS Hooks: a prefetch that is only the first page of its search --------------------------

@pytest.fixture(scope="module")
def hooks_client(tmp_path_factory):
    from tests.support.cds_fixtures import core_at_fixture_time, fixture_app

    with core_at_fixture_time():
        yield fixture_app(tmp_path_factory.mktemp("cds-incomplete")).test_client()


def _first_page_only(hook: str) -> dict[str, Any]:
    """The example call, with no fhirServer and a labs prefetch whose calcium and phosphate are on page two."""
    from tests.support.cds_fixtures import request_for

    body = copy.deepcopy(request_for(hook))
    body.pop("fhirServer", None)
    body.pop("fhirAuthorization", None)
    labs = body["prefetch"]["labs"]
    labs["entry"] = [e for e in labs["entry"] if e["resource"]["id"] == "cr-7301"]
    labs["link"] = [{"relation": "next", "url": "https://ehr.example.org/fhir/Observation?page=2"}]
    return body


def _assessment_card(client, hook: str, body: dict[str, Any]) -> dict[str, Any]:
    from tests.support.cds_spec import card_violations

    response = client.post(f"/cds-services/calcinosis-{hook}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert card_violations(response.get_json()) == []
    cards = [c for c in response.get_json()["cards"] if "Iatrogenic" not in c["summary"]]
    assert len(cards) == 1, [c["summary"] for c in response.get_json()["cards"]]
    return cards[0]


def _suggested(card: dict[str, Any]) -> set[str]:
    codes_found = set()
    for suggestion in card.get("suggestions", []):
        for action in suggestion["actions"]:
            get_fhir_model_class("ServiceRequest").model_validate(action["resource"])
            codes_found.add(action["resource"]["code"]["coding"][0]["code"])
    return codes_found


@pytest.mark.parametrize("hook", ["patient-view", "order-sign"])
def test_a_first_page_only_labs_prefetch_proposes_no_calcium_or_phosphate_as_missing(hooks_client, hook):
    card = _assessment_card(hooks_client, hook, _first_page_only(hook))
    assert CALCIUM not in _suggested(card) and PHOSPHATE not in _suggested(card)
    detail = card["detail"]
    assert "**Could not confirm (not proposed)**" in detail
    section = detail.split("**Could not confirm (not proposed)**", 1)[1].split("\n\n**", 1)[0]
    assert "check for a current result before ordering" in section
    assert f"({CALCIUM}): could not confirm: the laboratory search was only partly read" in section
    assert f"({PHOSPHATE}): could not confirm" in section
    missing = detail.split("**Missing from the work-up**", 1)[1].split("\n\n**", 1)[0] \
        if "**Missing from the work-up**" in detail else ""
    assert CALCIUM not in missing and PHOSPHATE not in missing
    assert "no usable calcium result" not in detail and "no usable phosphate result" not in detail
    assert "no calcium result among the results read (the laboratory search was incomplete)" in detail
    # The data notes already say the prefetch was partial; the core now agrees with them.
    assert "prefetch 'labs' is only the first page of its search" in detail
    assert "on file" not in card["summary"]


def test_the_partial_prefetch_reaches_the_core_as_a_data_gap_of_the_context_patient(monkeypatch, tmp_path):
    from service.assessment_model import DataGap
    from service.hooks import hook_call
    from tests.support.cds_app import FakeCore, make_app, metastatic_assessment

    fake = FakeCore(metastatic_assessment("esrd-7301"))
    monkeypatch.setattr(hook_call, "core_assess", fake)
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "fb.sqlite3")})
    response = app.test_client().post("/cds-services/calcinosis-patient-view", json=_first_page_only("patient-view"))
    assert response.status_code == 200
    assert fake.calls[0]["data_gaps"] == (DataGap("Observation", location="prefetch.labs", patient_id="esrd-7301"),)


# ---- the command line ---------------------------------------------------------------------------

def test_the_cli_summary_lists_unconfirmed_tests_apart_from_the_recommended_ones(tmp_path, capsys):
    from service.cli import main

    path = tmp_path / "first-page.json"
    path.write_text(json.dumps(_searchset(next_link=True)), encoding="utf-8")
    assert main(["assess", str(path), "--now", "2026-11-15T09:00:00Z"]) == 0
    out = capsys.readouterr().out
    recommended = out.split("Recommended tests")[1].split("Could not confirm")[0]
    assert "(LOINC 17861-6)" not in recommended and "(LOINC 2777-1)" not in recommended
    unconfirmed = out.split("Could not confirm (not proposed: check for a current result before ordering)")[1]
    unconfirmed = unconfirmed.split("Already available")[0]
    assert "(LOINC 17861-6): could not confirm: the laboratory search was only partly read" in " ".join(unconfirmed.split())
    assert "no usable calcium result" not in out
    assert "the searchset is incomplete" in out
