"""Feedback: validated, stored durably, and counted per card type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.hooks import hook_call
from service.hooks.feedback_store import FeedbackStore, feedback_report
from tests.support.cds_app import FakeCore, calcium_gluconate_alert, make_app, metastatic_assessment

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "cds-hooks"
FEEDBACK_URL = "/cds-services/calcinosis-order-select/feedback"


@pytest.fixture
def core(monkeypatch):
    fake = FakeCore(metastatic_assessment("esrd-7301", order_alerts=(calcium_gluconate_alert(),)))
    monkeypatch.setattr(hook_call, "core_assess", fake)
    return fake


def _app(db: Path):
    return make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(db)})


def _cards(client) -> list[dict]:
    body = json.loads((FIXTURES / "order-select-request.json").read_text())
    response = client.post("/cds-services/calcinosis-order-select", json=body)
    assert response.status_code == 200
    return response.get_json()["cards"]


def _accept(card: dict) -> dict:
    return {"card": card["uuid"], "outcome": "accepted",
            "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
            "outcomeTimestamp": "2026-11-15T09:05:00Z"}


def _override(card: dict) -> dict:
    reason = card["overrideReasons"][0]
    return {"card": card["uuid"], "outcome": "overridden",
            "overrideReason": {"reason": reason, "userComment": "infusion is urgent"},
            "outcomeTimestamp": "2026-11-15T09:06:00Z"}


def test_feedback_survives_a_restart_on_the_same_database(tmp_path, core):
    db = tmp_path / "feedback.sqlite3"
    client = _app(db).test_client()
    alert, assessment = _cards(client)
    response = client.post(FEEDBACK_URL, json={"feedback": [_override(alert), _accept(assessment)]})
    assert response.status_code == 200

    restarted = _app(db)  # a new app on the same file, as after a redeploy
    counts = {row[0]: row[1:] for row in restarted.extensions["calcinosis_cds_hooks"].feedback.counts_by_card_type()}
    assert counts["order-alert:iatrogenic"] == (1, 0, 1)
    assert counts["assessment:metastatic"] == (1, 1, 0)


def test_the_report_prints_acceptance_and_override_counts_per_card_type(tmp_path, core):
    db = tmp_path / "feedback.sqlite3"
    client = _app(db).test_client()
    for _ in range(2):
        alert, assessment = _cards(client)
        client.post(FEEDBACK_URL, json={"feedback": [_override(alert)]})
    client.post(FEEDBACK_URL, json={"feedback": [_accept(assessment)]})
    report = feedback_report(db)
    lines = {line.split()[0]: line.split()[1:] for line in report.splitlines() if line.startswith(("order", "assess"))}
    assert lines["order-alert:iatrogenic"] == ["2", "0", "2"]
    assert lines["assessment:metastatic"] == ["2", "1", "0"]
    assert "Benefit outweighs the calcinosis risk (2)" in report


def test_feedback_on_a_card_never_issued_is_counted_as_unknown(tmp_path):
    db = tmp_path / "feedback.sqlite3"
    store = FeedbackStore(db)
    from service.hooks.request_validation import validate_feedback

    store.record_feedback("calcinosis-patient-view", validate_feedback({"feedback": [
        {"card": "6f1c2a5e-0000-4000-8000-000000000001", "outcome": "accepted",
         "acceptedSuggestions": [{"id": "6f1c2a5e-0000-4000-8000-000000000002"}],
         "outcomeTimestamp": "2026-11-15T09:05:00Z"}]}))
    assert store.counts_by_card_type() == [("unknown", 0, 1, 0)]


def test_the_report_says_so_when_there_is_no_database(tmp_path):
    assert "No feedback database" in feedback_report(tmp_path / "absent.sqlite3")


@pytest.mark.parametrize("body, location", [
    ({}, "feedback"),
    ({"feedback": []}, "feedback"),
    ({"feedback": [{"outcome": "accepted", "outcomeTimestamp": "2026-11-15T09:05:00Z"}]}, "feedback[0].card"),
    ({"feedback": [{"card": "c1", "outcome": "ignored", "outcomeTimestamp": "2026-11-15T09:05:00Z"}]},
     "feedback[0].outcome"),
    ({"feedback": [{"card": "c1", "outcome": "accepted"}]}, "feedback[0].outcomeTimestamp"),
    ({"feedback": [{"card": "c1", "outcome": "accepted", "outcomeTimestamp": "yesterday"}]},
     "feedback[0].outcomeTimestamp"),
    ({"feedback": [{"card": "c1", "outcome": "accepted", "outcomeTimestamp": "2026-11-15T09:05:00Z",
                    "overrideReason": {"reason": {"code": "x"}}}]}, "feedback[0].overrideReason"),
    ({"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-15T09:05:00Z",
                    "overrideReason": {"reason": {"display": "no code"}}}]}, "feedback[0].overrideReason.reason.code"),
    ({"feedback": [{"card": "c1", "outcome": "accepted", "outcomeTimestamp": "2026-11-15T09:05:00Z",
                    "acceptedSuggestions": [{"label": "no id"}]}]}, "feedback[0].acceptedSuggestions[0].id"),
    ({"feedback": [{"card": "c1", "outcome": "accepted", "outcomeTimestamp": "2026-11-15T09:05:00Z"}]},
     "feedback[0].acceptedSuggestions"),
    ({"feedback": [{"card": "c1", "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}],
                    "outcomeTimestamp": "2026-11-15T10:00:00"}]}, "feedback[0].outcomeTimestamp"),
    ({"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-15T09:05:00Z",
                    "overrideReason": {"reason": {"code": "x", "system": ["a"]}}}]},
     "feedback[0].overrideReason.reason.system"),
    ({"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-15T09:05:00Z",
                    "overrideReason": {"reason": {"code": "x"}}}]}, "feedback[0].overrideReason.reason.system"),
    ({"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-15T09:05:00Z",
                    "overrideReason": {"reason": "already-evaluated"}}]}, "feedback[0].overrideReason.reason"),
])
def test_a_bad_feedback_body_is_refused_with_400_and_nothing_is_stored(tmp_path, body, location):
    db = tmp_path / "feedback.sqlite3"
    client = _app(db).test_client()
    response = client.post(FEEDBACK_URL, json=body)
    assert response.status_code == 400
    assert location in [i["expression"][0] for i in response.get_json()["issue"]]
    assert FeedbackStore(db).counts_by_card_type() == []


def test_feedback_for_an_unknown_service_is_404(tmp_path):
    client = _app(tmp_path / "f.sqlite3").test_client()
    response = client.post("/cds-services/nope/feedback", json={"feedback": [
        {"card": "c1", "outcome": "accepted", "outcomeTimestamp": "2026-11-15T09:05:00Z"}]})
    assert response.status_code == 404
