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
from datetime import timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from service.cql_like.values import Record
from tests.support.output_sweep import assert_clean_outputs
from tests.test_knowledge_scenarios import (SWEPT_DEFINES, ICD10CM, LOINC, NOW, SNOMED, Facts, _concept, _engine_library, _LIBRARY,
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
    outputs = _LIBRARY[0].evaluate(facts, now=NOW).values_only()
    assert_clean_outputs(facts.records, outputs, SWEPT_DEFINES)
    return outputs


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
    assert "no phosphate result among the results read (the laboratory search was incomplete)" in dystrophic
    # Where the value is shown (the metastatic rationale, the values note), it is said it may not be the latest.
    metastatic = out["Metastatic"]["rationale"]
    assert "Ca 9.4 mg/dL on" in metastatic
    assert metastatic.endswith(" The laboratory search was incomplete: results not read may be more recent.")
    (note,) = [n for n in out["Notes"] if n.startswith("Values used: ")]
    assert "Ca 9.4 mg/dL on" in note
    assert note.endswith(" The laboratory search was incomplete: results not read may be more recent.")


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
    assert ("No connective tissue disease or other tissue damage found among the conditions read "
            "(the condition search was incomplete).") in texts["Dystrophic"]
    assert "No skin necrosis or ulceration found among the conditions read (the condition search was incomplete)." \
        in texts["Calciphylaxis"]
    assert ("No tissue damage, iatrogenic or metastatic cause found among the conditions, medications, procedures and "
            "results read (the condition search was incomplete), and calcium and phosphate are normal.") in texts["Idiopathic"]
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
    assert "1 calcium result within 1 year could not be read" in dystrophic
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
    """The plan's activities for tests that could not be confirmed as missing (not results on file,
    not tests left out on purpose), by LOINC code."""
    (plan,) = by_type["CarePlan"]
    return {a["detail"]["code"]["coding"][0]["code"]: a["detail"] for a in plan.get("activity", [])
            if a.get("detail", {}).get("statusReason", {}).get("text", "").startswith("could not confirm")}


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
    assert "could not be confirmed as missing" in plan["description"]
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
    lines = detail.splitlines()
    (unconfirmed,) = [line for line in lines if line.startswith("**Could not confirm (not proposed):** ")]
    assert unconfirmed.endswith("(the laboratory search was only partly read). "
                                "Check for a current result before ordering.")
    unconfirmed_names = re.split(r", |; ", unconfirmed.split(":** ", 1)[1].split(" (the laboratory", 1)[0])
    assert {"Calcium", "Phosphate"} <= set(unconfirmed_names)
    missing = [line for line in lines if line.startswith("**Missing work-up:** ")]
    missing_names = re.split(r", |; ", missing[0].split(":** ", 1)[1]) if missing else []
    assert "Calcium" not in missing_names and "Phosphate" not in missing_names
    assert "no usable calcium result" not in detail and "no usable phosphate result" not in detail
    assert ("No calcium or phosphate result among the results read (the laboratory search was incomplete): "
            "unknown, not normal.") in detail
    # The data notes say the prefetch was partial, the core agrees; where, is for the EHR's developers.
    assert "- Lab results were read only in part: any result may be missing" in detail
    located = card["extension"]["calcinosis-cds.org/data-notes"]
    assert any(n["text"].startswith("prefetch 'labs' is only the first page of its search") and
               n["location"] == "prefetch.labs.link" for n in located)
    assert "prefetch" not in detail
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
    assert "could not confirm: the laboratory search was only partly read:" in " ".join(unconfirmed.split())
    assert "(LOINC 17861-6)" in unconfirmed
    assert "no usable calcium result" not in out
    assert "the searchset is incomplete" in out


# ---- where gaps come from -----------------------------------------------------------------------

def test_a_condition_that_fails_r4_validation_makes_the_condition_search_incomplete(fixed_client):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": _resource("Patient", id="pg-1", gender="female", birthDate="1968-03-02")},
        {"resource": _resource("Condition", id="c-bad", code={"text": "Systemic sclerosis"},
                               subject={"reference": "Patient/pg-1"}, onsetDateTime="last spring")},
        {"resource": _lab("ca-1", CALCIUM, 9.4, "mg/dL")},
        {"resource": _lab("p-1", PHOSPHATE, 3.5, "mg/dL")},
    ]}
    by_type = _assess(fixed_client, bundle)
    rationales_text = " ".join(p.get("rationale", "") for p in by_type["RiskAssessment"][0]["prediction"])
    assert "No connective tissue disease or other tissue damage found among the conditions read (1 condition could " \
           "not be read)." in rationales_text
    assert PTH in _proposed(by_type)  # the laboratory search was complete


@pytest.mark.parametrize("link, total", [("not-a-list", None), ([{"relation": "next"}], "7"), (None, True)])
def test_a_malformed_searchset_link_or_total_is_no_error(fixed_client, link, total):
    bundle = _searchset(next_link=False)
    if link is None:
        del bundle["link"]
    else:
        bundle["link"] = link
    if total is not None:
        bundle["total"] = total
    response = fixed_client.post(ASSESS, data=json.dumps(bundle), content_type="application/fhir+json")
    assert response.status_code in (200, 422), response.get_data(as_text=True)


def test_a_next_link_without_a_url_still_marks_the_search_incomplete(fixed_client):
    bundle = _searchset(next_link=False)
    bundle["link"].append({"relation": "next"})
    by_type = _assess(fixed_client, bundle)
    assert CALCIUM not in _proposed(by_type) and CALCIUM in _unconfirmed_activities(by_type)


def test_a_searchset_page_of_patients_only_marks_every_clinical_search_incomplete():
    from service.pipeline.ingest import CLINICAL_TYPES, read_bundle

    bundle = {"resourceType": "Bundle", "type": "searchset",
              "link": [{"relation": "self", "url": "https://ehr.example.org/fhir/Patient?name=x"},
                       {"relation": "next", "url": "https://ehr.example.org/fhir/Patient?name=x&page=2"}],
              "entry": [{"search": {"mode": "match"},
                         "resource": _resource("Patient", id="pg-1", gender="female", birthDate="1968-03-02")}]}
    ingested = read_bundle(bundle)
    assert sorted(gap.resource_type for gap in ingested.gaps) == sorted(CLINICAL_TYPES)
    assert all(gap.location == "Bundle.link[1]" and gap.patient_id is None for gap in ingested.gaps)


def test_a_caller_gap_naming_one_patient_leaves_the_others_complete():
    from service.pipeline.assess import assess_bundle
    from service.assessment_model import DataGap
    from service.config import load_config

    def person(pid: str) -> list[dict[str, Any]]:
        return [{"fullUrl": f"urn:uuid:{pid}", "resource": _resource("Patient", id=pid, gender="male",
                                                                     birthDate="1970-01-01")}]

    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": person("00000000-0000-4000-8000-000000000001") + person("00000000-0000-4000-8000-000000000002")}
    run = assess_bundle(bundle, config=load_config({}), now=NOW,
                        data_gaps=(DataGap("Observation", location="prefetch.labs",
                                           patient_id="00000000-0000-4000-8000-000000000001"),))
    by_id = {p.patient_id: p for p in run.patients}
    first, second = by_id["00000000-0000-4000-8000-000000000001"], by_id["00000000-0000-4000-8000-000000000002"]
    assert CALCIUM in [t.code for t in first.unconfirmed] and CALCIUM not in [t.code for t in first.recommended]
    assert CALCIUM in [t.code for t in second.recommended] and second.unconfirmed == ()


EHR = "https://ehr.example.org/fhir"


def _gathered_gaps(body: dict[str, Any], config: dict[str, Any], tmp_path) -> tuple:
    from service.hooks import hook_call
    from tests.support.cds_app import FakeCore, make_app, metastatic_assessment

    fake = FakeCore(metastatic_assessment("esrd-7301"))
    original = hook_call.core_assess
    hook_call.core_assess = fake
    try:
        app = make_app(dict(config, CDS_REQUIRE_JWT=False, CDS_FEEDBACK_DB=str(tmp_path / "fb.sqlite3")))
        response = app.test_client().post("/cds-services/calcinosis-patient-view", json=body)
    finally:
        hook_call.core_assess = original
    assert response.status_code == 200, response.get_data(as_text=True)
    return fake.calls[0]["data_gaps"]


def _page(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    page: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}
    if next_url:
        page["link"] = [{"relation": "next", "url": next_url}]
    return page


def _ehr_lab(oid: str) -> dict[str, Any]:
    return dict(_lab(oid, CALCIUM, 9.1, "mg/dL"), subject={"reference": "Patient/esrd-7301"})


def test_a_complete_prefetch_hands_no_gap_to_the_core(tmp_path):
    from tests.support.cds_fixtures import request_for

    assert _gathered_gaps(request_for("patient-view"), {}, tmp_path) == ()


def test_a_prefetch_total_above_its_entries_is_a_gap(tmp_path):
    from service.assessment_model import DataGap
    from tests.support.cds_fixtures import request_for

    body = request_for("patient-view")
    body["prefetch"]["conditions"]["total"] = 4
    assert _gathered_gaps(body, {}, tmp_path) == (
        DataGap("Condition", location="prefetch.conditions", patient_id="esrd-7301"),)


def test_pages_beyond_the_cap_or_a_page_that_fails_are_gaps_and_a_search_read_to_its_end_is_not(tmp_path):
    import responses

    from service.assessment_model import DataGap
    from tests.support.cds_fixtures import request_for

    config = {"CDS_FHIR_SERVER_ALLOWLIST": [EHR], "CDS_FHIR_MAX_PAGES": 2}
    labs_gap = (DataGap("Observation", location="prefetch.labs", patient_id="esrd-7301"),)
    body = request_for("patient-view")
    body["prefetch"]["labs"] = _page([_ehr_lab("o1")], f"{EHR}/Observation?page=2")
    with responses.RequestsMock() as mock:  # page 2 ends the search
        mock.get(f"{EHR}/Observation", json=_page([_ehr_lab("o2")]))
        assert _gathered_gaps(body, config, tmp_path / "a") == ()
    with responses.RequestsMock() as mock:  # page 2 points to page 3, beyond the cap of 2
        mock.get(f"{EHR}/Observation", json=_page([_ehr_lab("o2")], f"{EHR}/Observation?page=3"))
        assert _gathered_gaps(body, config, tmp_path / "b") == labs_gap
    with responses.RequestsMock() as mock:  # page 2 cannot be read
        mock.get(f"{EHR}/Observation", status=500)
        assert _gathered_gaps(body, config, tmp_path / "c") == labs_gap
    del body["prefetch"]["labs"]
    with responses.RequestsMock() as mock:  # the fallback read stops at the cap too
        mock.get(f"{EHR}/Observation", json=_page([_ehr_lab("o1")], f"{EHR}/Observation?page=2"))
        assert _gathered_gaps(body, config, tmp_path / "d") == labs_gap


def test_rules_eval_sees_the_gaps_of_a_searchset_as_assess_does(tmp_path, capsys):
    from service.cli import main

    path = tmp_path / "first-page.json"
    path.write_text(json.dumps(_searchset(next_link=True)), encoding="utf-8")
    assert main(["rules", "eval", "--define", "Lab Search Incomplete", str(path), "--now", "2026-11-15T09:00:00Z"]) == 0
    assert "Lab Search Incomplete = true" in capsys.readouterr().out


def test_a_partly_read_condition_prefetch_never_says_no_calcinosis_cutis_is_on_file(hooks_client):
    from tests.support.cds_fixtures import request_for

    body = copy.deepcopy(request_for("patient-view"))
    body.pop("fhirServer", None)
    body.pop("fhirAuthorization", None)
    body["prefetch"]["conditions"]["link"] = [{"relation": "next", "url": "https://ehr.example.org/fhir/Condition?page=2"}]
    card = _assessment_card(hooks_client, "patient-view", body)
    assert "No calcinosis cutis is on file" not in card["detail"]
    assert "No calcinosis cutis found among the conditions read (the condition search was incomplete)" in card["detail"]
    assert {CALCIUM, PHOSPHATE}.isdisjoint(_suggested(card))  # their results were read: available


def test_the_incomplete_searches_are_an_output_of_the_library():
    out = evaluate(Facts([calcium("9.4"), data_gap("Condition", location="prefetch.conditions"),
                          data_gap("Observation", "resource-skipped", code=CALCIUM, days_ago=3)], patient()))
    assert out["Incomplete Searches"] == ["condition"]  # a skipped result is accounted per analyte
    out = evaluate(Facts([data_gap("Observation"), data_gap("MedicationStatement", "resource-skipped")], patient()))
    assert out["Incomplete Searches"] == ["laboratory", "medication"]


def test_the_cli_does_not_say_no_calcinosis_condition_when_the_conditions_were_partly_read(tmp_path, capsys):
    from service.cli import main

    bundle = _searchset(next_link=True)
    bundle["link"][0]["url"] = "https://ehr.example.org/fhir/Patient/pg-1/$everything"
    bundle["entry"].append({"search": {"mode": "match"}, "resource": _resource(
        "Condition", id="c-1", code={"text": "Raynaud phenomenon"}, subject={"reference": "Patient/pg-1"})})
    path = tmp_path / "everything-page-1.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    assert main(["assess", str(path), "--now", "2026-11-15T09:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert ("Calcinosis cutis Condition on record: none found among the conditions read "
            "(the condition search was incomplete).") in out
