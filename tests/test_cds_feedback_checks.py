"""Feedback must be about cards this service issued, and say only what those cards offered."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from service.hooks import hook_call
from service.hooks.feedback_store import FeedbackStore
from tests.support.cds_app import FakeCore, calcium_gluconate_alert, make_app, metastatic_assessment

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "cds-hooks"
FEEDBACK_URL = "/cds-services/calcinosis-order-select/feedback"


@pytest.fixture
def core(monkeypatch):
    fake = FakeCore(metastatic_assessment("esrd-7301", order_alerts=(calcium_gluconate_alert(),)))
    monkeypatch.setattr(hook_call, "core_assess", fake)
    return fake


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "feedback.sqlite3"


@pytest.fixture
def client(db, core):
    return make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(db)}).test_client()


def _cards(client) -> list[dict]:
    body = json.loads((FIXTURES / "order-select-request.json").read_text())
    response = client.post("/cds-services/calcinosis-order-select", json=body)
    assert response.status_code == 200
    return response.get_json()["cards"]


def _now_text(offset: timedelta = timedelta()) -> str:
    return (datetime.now(timezone.utc) + offset).isoformat(timespec="seconds")


def _accept(card: dict, suggestion_id: str | None = None) -> dict:
    return {"card": card["uuid"], "outcome": "accepted",
            "acceptedSuggestions": [{"id": suggestion_id or card["suggestions"][0]["uuid"]}],
            "outcomeTimestamp": _now_text()}


def _override(card: dict, reason: dict | None = None, comment: str = "infusion is urgent") -> dict:
    return {"card": card["uuid"], "outcome": "overridden",
            "overrideReason": {"reason": reason or card["overrideReasons"][0], "userComment": comment},
            "outcomeTimestamp": _now_text()}


def _refused_at(client, db, feedback: list[dict]) -> list[dict]:
    response = client.post(FEEDBACK_URL, json={"feedback": feedback})
    assert response.status_code == 400, response.get_data(as_text=True)
    counts = FeedbackStore(db).counts_by_card_type()
    assert all(accepted == 0 and overridden == 0 for _type, _issued, accepted, overridden in counts)
    return response.get_json()["issue"]


def test_feedback_on_cards_this_service_issued_is_stored(client, db):
    alert, assessment = _cards(client)
    response = client.post(FEEDBACK_URL, json={"feedback": [_override(alert), _accept(assessment)]})
    assert response.status_code == 200
    counts = {row[0]: row[1:] for row in FeedbackStore(db).counts_by_card_type()}
    assert counts["order-alert:iatrogenic"] == (1, 0, 1)
    assert counts["assessment:metastatic"] == (1, 1, 0)


@pytest.mark.parametrize("card_id", ["6f1c2a5e-0000-4000-8000-000000000001", "c1",
                                     "{6f1c2a5e-0000-4000-8000-000000000001}"])
def test_feedback_on_a_card_never_issued_is_refused_at_its_card(client, db, card_id):
    (issue,) = _refused_at(client, db, [{"card": card_id, "outcome": "overridden",
                                         "outcomeTimestamp": _now_text()}])
    assert issue["expression"] == ["feedback[0].card"]
    assert "not issued by this service" in issue["diagnostics"]


def test_feedback_sent_to_another_service_than_the_one_that_issued_the_card_is_refused(client, db):
    alert, _assessment = _cards(client)
    response = client.post("/cds-services/calcinosis-patient-view/feedback", json={"feedback": [_override(alert)]})
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["feedback[0].card"]


def test_an_accepted_suggestion_the_card_did_not_offer_is_refused(client, db):
    alert, assessment = _cards(client)
    (issue,) = _refused_at(client, db, [_accept(assessment, "6f1c2a5e-0000-4000-8000-00000000abcd")])
    assert issue["expression"] == ["feedback[0].acceptedSuggestions[0].id"]


def test_accepting_a_suggestion_of_another_card_is_refused(client, db):
    _alert, assessment = _cards(client)
    _alert2, other_assessment = _cards(client)
    (issue,) = _refused_at(client, db, [_accept(assessment, other_assessment["suggestions"][0]["uuid"])])
    assert issue["expression"] == ["feedback[0].acceptedSuggestions[0].id"]


def test_an_override_reason_the_card_did_not_offer_is_refused(client, db):
    alert, assessment = _cards(client)
    offered_elsewhere = assessment["overrideReasons"][0]  # an assessment reason, not an order-alert one
    (issue,) = _refused_at(client, db, [_override(alert, reason=offered_elsewhere)])
    assert issue["expression"] == ["feedback[0].overrideReason.reason"]


def test_an_outcome_timestamp_more_than_five_minutes_ahead_is_refused(client, db):
    alert, _assessment = _cards(client)
    entry = dict(_override(alert), outcomeTimestamp=_now_text(timedelta(minutes=10)))
    (issue,) = _refused_at(client, db, [entry])
    assert issue["expression"] == ["feedback[0].outcomeTimestamp"]


def test_an_outcome_timestamp_a_little_ahead_for_clock_skew_is_accepted(client, db):
    alert, _assessment = _cards(client)
    entry = dict(_override(alert), outcomeTimestamp=_now_text(timedelta(minutes=2)))
    assert client.post(FEEDBACK_URL, json={"feedback": [entry]}).status_code == 200


def test_a_user_comment_over_2000_characters_is_refused(client, db):
    alert, _assessment = _cards(client)
    (issue,) = _refused_at(client, db, [_override(alert, comment="x" * 2001)])
    assert issue["expression"] == ["feedback[0].overrideReason.userComment"]
    assert client.post(FEEDBACK_URL, json={"feedback": [_override(alert, comment="x" * 2000)]}).status_code == 200


def test_one_bad_entry_refuses_the_whole_feedback_call(client, db):
    alert, assessment = _cards(client)
    issues = _refused_at(client, db, [_override(alert), _accept(assessment, "6f1c2a5e-0000-4000-8000-00000000abcd")])
    assert [i["expression"][0] for i in issues] == ["feedback[1].acceptedSuggestions[0].id"]


def test_a_database_from_before_the_suggestion_columns_is_migrated_and_keeps_its_rows(tmp_path, core):
    db = tmp_path / "old.sqlite3"
    # Issued yesterday: within the retention of card records, so the migration alone decides what is kept.
    issued_at = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat(timespec="seconds")
    with closing(sqlite3.connect(db)) as connection, connection:
        connection.executescript(f"""
            CREATE TABLE issued_card (uuid TEXT PRIMARY KEY, service_id TEXT NOT NULL, card_type TEXT NOT NULL,
                                      hook_instance TEXT NOT NULL, issued_at TEXT NOT NULL);
            INSERT INTO issued_card VALUES ('6f1c2a5e-0000-4000-8000-000000000001', 'calcinosis-order-select',
                                            'assessment:metastatic', 'd1577c69-dfbe-44ad-ba6d-3e05e953b2ea',
                                            '{issued_at}');
        """)
    client = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(db)}).test_client()
    alert, _assessment = _cards(client)
    assert client.post(FEEDBACK_URL, json={"feedback": [_override(alert)]}).status_code == 200
    restarted = FeedbackStore(db)
    counts = {row[0]: row[1:] for row in restarted.counts_by_card_type()}
    assert counts["assessment:metastatic"] == (2, 0, 0)
    assert counts["order-alert:iatrogenic"] == (1, 0, 1)
