"""Draft orders stay bounded: a cap per call, and one warning per medication however many orders name it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from service.hooks import hook_call
from service.hooks.cards import CardContext, build_cards
from tests.support.cds_app import FakeCore, calcium_gluconate_alert, make_app, metastatic_assessment, quiet_assessment
from tests.support.cds_spec import card_violations

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "cds-hooks"


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setattr(hook_call, "core_assess", FakeCore(metastatic_assessment("esrd-7301")))
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
                    "CDS_MAX_DRAFT_ORDERS": 5})
    return app.test_client()


def _sign_request_with(order_count: int) -> dict:
    body = json.loads((FIXTURES / "order-sign-request.json").read_text())
    template = body["context"]["draftOrders"]["entry"][0]
    entries = []
    for index in range(order_count):
        entry = copy.deepcopy(template)
        entry["resource"]["id"] = f"draft-{index}"
        entry.pop("fullUrl", None)
        entries.append(entry)
    body["context"]["draftOrders"]["entry"] = entries
    return body


def test_more_draft_orders_than_the_cap_are_refused_with_400_naming_the_entries(client):
    response = client.post("/cds-services/calcinosis-order-sign", json=_sign_request_with(6))
    assert response.status_code == 400
    (issue,) = response.get_json()["issue"]
    assert issue["expression"] == ["context.draftOrders.entry"]
    assert "5" in issue["diagnostics"]


def test_draft_orders_up_to_the_cap_are_accepted(client):
    assert client.post("/cds-services/calcinosis-order-sign", json=_sign_request_with(5)).status_code == 200


def test_the_default_cap_is_200_draft_orders(tmp_path, monkeypatch):
    monkeypatch.setattr(hook_call, "core_assess", FakeCore(metastatic_assessment("esrd-7301")))
    client = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3")}).test_client()
    assert client.post("/cds-services/calcinosis-order-sign", json=_sign_request_with(201)).status_code == 400


def _context(**changes) -> CardContext:
    fields = dict(hook="order-sign", base_url="https://cds.example.org", patient_reference="Patient/pat-1")
    fields.update(changes)
    return CardContext(**fields)


def test_many_orders_of_one_medication_give_one_warning_listing_every_order():
    alerts = tuple(calcium_gluconate_alert(f"MedicationRequest/ca-{n}") for n in range(4))
    cards = build_cards(quiet_assessment(order_alerts=alerts), _context())
    (card,) = cards
    assert card.card["indicator"] == "warning"
    assert card.card["extension"]["calcinosis-cds.org/orders"] == [f"MedicationRequest/ca-{n}" for n in range(4)]
    assert "Applies to 4 orders of this medication." in card.card["detail"]
    assert "MedicationRequest/" not in card.card["detail"]  # an order id means nothing to a clinician
    assert card_violations({"cards": [c.card for c in cards]}) == []


def test_two_medications_give_two_warnings():
    other = calcium_gluconate_alert("MedicationRequest/k-phos")
    other = type(other)(other.order_reference, "Potassium phosphate IV", "IV phosphate can precipitate.", "")
    alerts = (calcium_gluconate_alert("MedicationRequest/ca-1"), other,
              calcium_gluconate_alert("MedicationRequest/ca-2"))
    cards = build_cards(quiet_assessment(order_alerts=alerts), _context())
    assert [c.card["summary"] for c in cards] == ["Iatrogenic calcinosis risk: Calcium gluconate 10% IV infusion",
                                                  "Iatrogenic calcinosis risk: Potassium phosphate IV"]


def test_order_select_groups_only_the_selected_orders():
    alerts = tuple(calcium_gluconate_alert(f"MedicationRequest/ca-{n}") for n in range(3))
    (card,) = build_cards(quiet_assessment(order_alerts=alerts),
                          _context(hook="order-select", selections=("MedicationRequest/ca-2",)))
    assert card.card["extension"]["calcinosis-cds.org/orders"] == ["MedicationRequest/ca-2"]
    assert "orders of this medication" not in card.card["detail"]


# -- request envelope --------------------------------------------------------------------------------

@pytest.mark.parametrize("hook_instance", ["urn:uuid:d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                                           "{d1577c69-dfbe-44ad-ba6d-3e05e953b2ea}",
                                           "d1577c69dfbe44adba6d3e05e953b2ea",
                                           "D1577C69-DFBE-44AD-BA6D-3E05E953B2EA-"])
def test_a_hook_instance_that_is_not_a_canonical_hyphenated_uuid_is_refused(client, hook_instance):
    body = json.loads((FIXTURES / "patient-view-request.json").read_text())
    body["hookInstance"] = hook_instance
    response = client.post("/cds-services/calcinosis-patient-view", json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["hookInstance"]


def test_an_upper_case_hyphenated_hook_instance_is_accepted(client):
    body = json.loads((FIXTURES / "patient-view-request.json").read_text())
    body["hookInstance"] = body["hookInstance"].upper()
    assert client.post("/cds-services/calcinosis-patient-view", json=body).status_code == 200


@pytest.mark.parametrize("path", ["/cds-services/calcinosis-patient-view",
                                  "/cds-services/calcinosis-patient-view/feedback"])
def test_an_empty_body_is_refused_as_not_a_cds_hooks_json_object(client, path):
    response = client.post(path, data=b"", content_type="application/json")
    assert response.status_code == 400
    diagnostics = response.get_json()["issue"][0]["diagnostics"]
    assert "must be a JSON object" in diagnostics
    assert "FHIR Bundle" not in diagnostics
