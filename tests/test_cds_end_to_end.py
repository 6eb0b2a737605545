"""CDS Hooks calls through the real assessment core: the same answers as $assess, presented as cards."""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_dir
from tests.support.cds_fixtures import core_at_fixture_time, fixture_app, request_for
from tests.support.cds_spec import card_violations


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with core_at_fixture_time():
        yield fixture_app(tmp_path_factory.mktemp("cds-e2e")).test_client()


def _cards(client, hook: str, body: dict) -> list[dict]:
    response = client.post(f"/cds-services/calcinosis-{hook}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert card_violations(response.get_json()) == []
    return response.get_json()["cards"]


def _suggested_codes(card: dict) -> list[str]:
    return [a["resource"]["code"]["coding"][0]["code"] for s in card.get("suggestions", []) for a in s["actions"]]


def test_esrd_with_a_high_product_and_no_calcinosis_on_file_warns_proposing_pth_and_vitamin_d(client):
    (card,) = _cards(client, "patient-view", request_for("patient-view"))
    assert card["indicator"] == "warning"  # a risk, not a finding: no calcinosis cutis on file
    assert "No calcinosis cutis found among the conditions read" in card["detail"]
    assert card["summary"] == "Metastatic calcinosis likely: Ca x P 81.8 mg2/dL2"
    assert "| P | 7.3 mg/dL (H) | 2026-11-01 |" in card["detail"]
    assert "| eGFR | 6 mL/min/1.73 m2 | 2026-11-01 |" in card["detail"]  # the kidney failure that drives the grade
    (missing,) = [line for line in card["detail"].splitlines() if line.startswith("**Missing work-up:** ")]
    assert "25-OH vitamin D" in missing and "[Mass/volume]" not in missing
    assert {"2731-8", "62292-8"} <= set(_suggested_codes(card))
    assert "17861-6" not in _suggested_codes(card)  # a current calcium result is on file


def test_order_select_on_iv_calcium_gluconate_warns_and_completes_the_panel_without_duplicates(client):
    alert, assessment = _cards(client, "order-select", request_for("order-select"))
    assert alert["indicator"] == "warning"
    assert "calcium gluconate" in alert["summary"].lower()
    assert "extravasation" in alert["detail"] and "dilut" in alert["detail"]
    codes = _suggested_codes(assessment)
    assert "2731-8" not in codes and "17861-6" not in codes  # both are already in draftOrders
    assert "62292-8" in codes
    assert assessment["suggestions"][0]["label"] == f"Order {len(codes)} more tests"


def test_order_select_alerts_only_when_the_infusion_is_the_order_just_selected(client):
    body = request_for("order-select")
    body["context"]["selections"] = ["ServiceRequest/draft-calcium"]
    cards = _cards(client, "order-select", body)
    assert [c["summary"] for c in cards if "Iatrogenic" in c["summary"]] == []


def test_order_sign_warns_about_a_phosphate_infusion(client):
    alert, _ = _cards(client, "order-sign", request_for("order-sign"))
    assert alert["indicator"] == "warning"
    assert "phosphate" in alert["summary"].lower()


def test_no_labs_on_file_is_unknown_and_proposes_the_baseline_panel(client):
    body = request_for("patient-view")
    body["prefetch"]["labs"] = None
    body["prefetch"]["conditions"] = None
    cards = _cards(client, "patient-view", body)
    assert len(cards) == 1
    (card,) = cards
    assert card["indicator"] != "critical"
    assert "no calcium/phosphate on file" in card["summary"]
    assert {"17861-6", "2777-1", "2731-8", "62292-8"} <= set(_suggested_codes(card))


def test_a_synthea_ckd_export_with_only_old_labs_is_unknown_not_normal(client):
    samples = shared_dir() / "fhir-samples" / "synthea"
    matches = sorted(samples.glob("Coleman_Ortiz_*.json")) if samples.is_dir() else []
    if not matches:
        pytest.skip(f"the Synthea sample bundles are not available under {samples}")
    export = json.loads(matches[0].read_text(encoding="utf-8"))
    resources = [e["resource"] for e in export["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")

    def searchset(resource_type: str) -> dict:
        return {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"resource": r} for r in resources if r["resourceType"] == resource_type]}

    body = request_for("patient-view")
    body["context"]["patientId"] = patient["id"]
    body["prefetch"] = {"patient": patient, "labs": searchset("Observation"), "conditions": searchset("Condition"),
                        "medications": searchset("MedicationRequest"), "procedures": searchset("Procedure")}
    (card,) = _cards(client, "patient-view", body)
    # Its calcium results are years older than the lookback window at the fixtures' instant.
    assert card["indicator"] == "info"
    assert card["summary"].endswith("no calcium/phosphate on file")
    assert "unknown, not normal" in card["detail"]
    assert {"17861-6", "2777-1"} <= set(_suggested_codes(card))  # Synthea has no phosphate at all


def _draft_infusion(text: str, draft_id: str) -> dict:
    return {"resource": {"resourceType": "MedicationRequest", "id": draft_id, "status": "draft", "intent": "order",
                         "medicationCodeableConcept": {"text": text}, "subject": {"reference": "Patient/esrd-7301"},
                         "authoredOn": "2026-11-15",
                         "dosageInstruction": [{"text": "IV", "route": {"coding": [
                             {"system": "http://snomed.info/sct", "code": "47625008", "display": "Intravenous route"}],
                             "text": "IV"}}]}}


def test_order_sign_warns_about_an_iv_calcium_chloride_draft(client):
    body = request_for("order-sign")
    body["context"]["draftOrders"]["entry"][0] = _draft_infusion(
        "Calcium chloride 10% injection, 1 g in 100 mL sodium chloride 0.9% IV over 60 minutes", "draft-ca-chloride")
    cards = _cards(client, "order-sign", body)
    alerts = [c for c in cards if c["summary"].startswith("Iatrogenic calcinosis risk")]
    assert len(alerts) == 1
    assert alerts[0]["indicator"] == "warning"
    assert "calcium chloride" in alerts[0]["summary"].lower()


def test_a_draft_infusion_sent_without_subject_still_gets_its_warning(client):
    body = request_for("order-sign")
    for entry in body["context"]["draftOrders"]["entry"]:
        entry["resource"].pop("subject")
    alert, _ = _cards(client, "order-sign", body)
    assert alert["indicator"] == "warning"
    assert "phosphate" in alert["summary"].lower()


def test_a_draft_of_another_analyte_does_not_hide_a_missing_test(client):
    body = request_for("order-sign")
    body["context"]["draftOrders"]["entry"][1]["resource"]["code"]["coding"] = [
        {"system": "http://loinc.org", "code": "2885-2", "display": "Protein [Mass/volume] in Serum or Plasma"}]
    _, assessment = _cards(client, "order-sign", body)
    codes = _suggested_codes(assessment)
    assert "2731-8" in codes and "2885-2" not in codes


@pytest.mark.parametrize("coding", [
    {"system": "http://loinc.org", "code": "14866-8", "display": "Parathyrin.intact [Moles/volume] in Serum or Plasma"},
    {"system": "http://loinc.org/", "code": "2731-8"},
])
def test_pth_already_drafted_under_any_of_its_codes_is_not_proposed_again(client, coding):
    body = request_for("order-sign")
    body["context"]["draftOrders"]["entry"][1]["resource"]["code"]["coding"] = [coding]
    _, assessment = _cards(client, "order-sign", body)
    assert not {"2731-8", "14866-8"} & set(_suggested_codes(assessment))
