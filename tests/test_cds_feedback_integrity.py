"""Feedback statistics a client cannot skew, and a report a stored text cannot hijack.

What used to happen: one call stored 100,000 rows; identical entries were all counted (one card
type showed 401,865 "accepted"); an override reason's `display` of 10 MiB was stored with terminal
escape codes that `calcinosis-cds feedback report` printed raw, and the report grouped by that
client-chosen text; issued-card records were kept forever.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from service.cli import main
from service.hooks import hook_call
from service.hooks.feedback_store import FeedbackStore, feedback_report
from tests.support.cds_app import FakeCore, calcium_gluconate_alert, make_app, metastatic_assessment

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "cds-hooks"
FEEDBACK_URL = "/cds-services/calcinosis-order-select/feedback"
ESCAPES = "\x1b[2J\x1b]0;owned\x07\u202e"


@pytest.fixture(autouse=True)
def core(monkeypatch):
    fake = FakeCore(metastatic_assessment("esrd-7301", order_alerts=(calcium_gluconate_alert(),)))
    monkeypatch.setattr(hook_call, "core_assess", fake)
    return fake


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "feedback.sqlite3"


def _client(db: Path, **settings):
    return make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(db), **settings}).test_client()


@pytest.fixture
def client(db):
    return _client(db)


def _cards(client) -> list[dict]:
    body = json.loads((FIXTURES / "order-select-request.json").read_text())
    response = client.post("/cds-services/calcinosis-order-select", json=body)
    assert response.status_code == 200
    return response.get_json()["cards"]


def _now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _accept(card: dict) -> dict:
    return {"card": card["uuid"], "outcome": "accepted",
            "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}], "outcomeTimestamp": _now_text()}


def _override(card: dict, display: str | None = None, comment: str = "urgent") -> dict:
    reason = dict(card["overrideReasons"][0])
    if display is not None:
        reason["display"] = display
    return {"card": card["uuid"], "outcome": "overridden", "overrideReason": {"reason": reason, "userComment": comment},
            "outcomeTimestamp": _now_text()}


def _counts(db: Path) -> dict[str, tuple[int, int, int]]:
    return {row[0]: tuple(row[1:]) for row in FeedbackStore(db).counts_by_card_type()}


def _rows(db: Path, columns: str) -> list[tuple]:
    with closing(sqlite3.connect(db)) as connection:
        return connection.execute(f"SELECT {columns} FROM feedback ORDER BY id").fetchall()


# --- at most N entries per call -------------------------------------------------------------------

def test_more_entries_than_the_limit_is_a_413_and_nothing_is_stored(db):
    client = _client(db, CDS_MAX_FEEDBACK_ENTRIES=3)
    alert, assessment = _cards(client)
    response = client.post(FEEDBACK_URL, json={"feedback": [_override(alert), _accept(assessment)] * 2})
    assert response.status_code == 413
    (issue,) = response.get_json()["issue"]
    assert issue["code"] == "too-costly" and issue["expression"] == ["feedback"]
    assert "CDS_MAX_FEEDBACK_ENTRIES" in issue["diagnostics"]
    assert _rows(db, "id") == []
    assert client.post(FEEDBACK_URL, json={"feedback": [_override(alert), _accept(assessment)]}).status_code == 200


def test_a_hundred_thousand_entries_are_refused_before_any_is_read(client, db):
    alert, _assessment = _cards(client)
    entry = {"card": alert["uuid"], "outcome": "overridden", "outcomeTimestamp": _now_text()}
    response = client.post(FEEDBACK_URL, json={"feedback": [entry] * 100_000})  # ~11 MB, within MAX_BODY_BYTES
    assert response.status_code == 413
    assert "holds 100000 entries; at most 100" in response.get_json()["issue"][0]["diagnostics"]
    assert _rows(db, "id") == []


def test_a_huge_array_of_accepted_suggestions_is_a_413(client, db):
    _alert, assessment = _cards(client)
    entry = _accept(assessment)
    entry["acceptedSuggestions"] = entry["acceptedSuggestions"] * 50_000
    response = client.post(FEEDBACK_URL, json={"feedback": [entry]})
    assert response.status_code == 413
    assert response.get_json()["issue"][0]["expression"] == ["feedback[0].acceptedSuggestions"]


# --- one stored outcome per card, hookInstance and outcome -------------------------------------------

def test_a_repeated_outcome_is_answered_200_and_counted_once(client, db):
    alert, assessment = _cards(client)
    for _ in range(3):
        response = client.post(FEEDBACK_URL, json={"feedback": [_accept(assessment), _accept(assessment)]})
        assert response.status_code == 200
    assert _counts(db)["assessment:metastatic"] == (1, 1, 0)
    assert len(_rows(db, "id")) == 1


def test_each_outcome_of_a_card_is_counted_once_and_other_cards_count_apart(client, db):
    alert, assessment = _cards(client)
    second_alert, _second_assessment = _cards(client)
    body = {"feedback": [_accept(assessment), _override(assessment), _override(alert), _override(second_alert)]}
    assert client.post(FEEDBACK_URL, json=body).status_code == 200
    assert client.post(FEEDBACK_URL, json=body).status_code == 200
    counts = _counts(db)
    assert counts["assessment:metastatic"] == (2, 1, 1)
    assert counts["order-alert:iatrogenic"] == (2, 0, 2)
    hook_instances = {row[0] for row in _rows(db, "hook_instance")}
    assert hook_instances == {json.loads((FIXTURES / "order-select-request.json").read_text())["hookInstance"]}


# --- only the service's own words are stored ---------------------------------------------------------

def test_the_override_display_stored_is_the_one_the_service_issued_never_the_clients(client, db):
    alert, _assessment = _cards(client)
    issued_display = alert["overrideReasons"][0]["display"]
    response = client.post(FEEDBACK_URL, json={"feedback": [_override(alert, display=ESCAPES + "x" * 1_000_000)]})
    assert response.status_code == 200
    assert _rows(db, "override_display, override_code") == [(issued_display, alert["overrideReasons"][0]["code"])]


def test_a_comment_is_stored_without_control_characters_or_direction_marks(client, db):
    alert, _assessment = _cards(client)
    comment = f"line one\n\tline two {ESCAPES}\x00end\u2066"
    assert client.post(FEEDBACK_URL, json={"feedback": [_override(alert, comment=comment)]}).status_code == 200
    ((stored,),) = _rows(db, "user_comment")
    assert stored == "line one\n\tline two [2J]0;ownedend"


def test_a_comment_over_the_bound_is_still_refused(client, db):
    alert, _assessment = _cards(client)
    response = client.post(FEEDBACK_URL, json={"feedback": [_override(alert, comment="x" * 2001)]})
    assert response.status_code == 400
    assert _rows(db, "id") == []


# --- the report: escaped, grouped by the service's codes ---------------------------------------------

def _old_database(path: Path, feedback_rows: list[tuple]) -> None:
    """A database as the previous version wrote it: no card type or hookInstance on feedback rows."""
    issued_at = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat(timespec="seconds")
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.executescript("""
            CREATE TABLE issued_card (uuid TEXT PRIMARY KEY, service_id TEXT NOT NULL, card_type TEXT NOT NULL,
                hook_instance TEXT NOT NULL, issued_at TEXT NOT NULL, suggestion_uuids TEXT NOT NULL DEFAULT '[]',
                override_codes TEXT NOT NULL DEFAULT '[]');
            CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, service_id TEXT NOT NULL,
                card_uuid TEXT NOT NULL, outcome TEXT NOT NULL, accepted_suggestions TEXT NOT NULL,
                override_system TEXT, override_code TEXT, override_display TEXT, user_comment TEXT,
                outcome_timestamp TEXT NOT NULL, received_at TEXT NOT NULL);
        """)
        connection.execute("INSERT INTO issued_card VALUES (?, ?, ?, ?, ?, '[]', '[]')",
                           ("c1", "calcinosis-order-select", f"order-alert:{ESCAPES}", "h1", issued_at))
        connection.executemany(
            "INSERT INTO feedback (service_id, card_uuid, outcome, accepted_suggestions, override_system, override_code,"
            " override_display, user_comment, outcome_timestamp, received_at) VALUES (?, ?, ?, '[]', ?, ?, ?, NULL,"
            " '2026-11-15T09:00:00Z', '2026-11-15T09:00:00+00:00')", feedback_rows)


def test_an_older_database_is_migrated_repeats_folded_and_client_displays_dropped(tmp_path):
    db = tmp_path / "old.sqlite3"
    _old_database(db, [("calcinosis-order-select", "c1", "overridden", "urn:r", "benefit", f"{ESCAPES}Benefit")] * 3
                  + [("calcinosis-order-select", "c1", "accepted", None, None, None)] * 2)
    store = FeedbackStore(db)
    assert store.counts_by_card_type() == [(f"order-alert:{ESCAPES}", 1, 1, 1)]
    assert _rows(db, "override_display, hook_instance, card_type") == [
        (None, "h1", f"order-alert:{ESCAPES}"), (None, "h1", f"order-alert:{ESCAPES}")]


def test_the_report_escapes_what_it_prints_and_groups_by_reason_code(tmp_path):
    db = tmp_path / "old.sqlite3"
    _old_database(db, [("calcinosis-order-select", "c1", "overridden", "urn:r", "benefit", "Benefit")])
    FeedbackStore(db)  # migrated: the row now carries its card's type and hookInstance
    with closing(sqlite3.connect(db)) as connection, connection:  # later rows, as this version stores them
        connection.executemany(
            "INSERT INTO feedback (service_id, card_uuid, outcome, accepted_suggestions, override_system, override_code,"
            " override_display, outcome_timestamp, received_at, card_type, hook_instance)"
            " VALUES ('s', ?, 'overridden', '[]', 'urn:r', 'benefit', ?, 't', 'r', ?, 'h')",
            [(f"c{i}", f"Benefit outweighs {ESCAPES}", f"order-alert:{ESCAPES}") for i in range(2, 5)])
    report = feedback_report(db)
    assert "\x1b" not in report and "\x07" not in report and "\u202e" not in report
    assert "\\x1b[2J\\x1b]0;owned\\x07\\u202e" in report
    reason_lines = [line for line in report.splitlines() if "Benefit" in line or "benefit" in line]
    assert len(reason_lines) == 1 and reason_lines[0].endswith("(4)")


def test_the_cli_report_prints_no_control_character(tmp_path, capsys, monkeypatch):
    for name in ("CALCINOSIS_CDS_FEEDBACK_DB",):
        monkeypatch.delenv(name, raising=False)
    db = tmp_path / "old.sqlite3"
    _old_database(db, [("calcinosis-order-select", "c1", "overridden", "urn:r", "benefit", ESCAPES)])
    assert main(["feedback", "report", "--db", str(db)]) == 0
    printed = capsys.readouterr().out
    assert "order-alert:\\x1b[2J" in printed
    assert not any(ord(ch) < 32 and ch != "\n" for ch in printed)


def test_a_very_long_stored_text_is_cut_in_the_report(tmp_path):
    db = tmp_path / "old.sqlite3"
    _old_database(db, [("calcinosis-order-select", "c1", "overridden", "urn:r", "b" * 10_000, None)])
    report = feedback_report(db)
    assert max(len(line) for line in report.splitlines()) < 400


# --- issued-card records expire ----------------------------------------------------------------------

def _age_cards(db: Path, days: int) -> None:
    old = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="seconds")
    with closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("UPDATE issued_card SET issued_at = ?", (old,))


def test_feedback_on_a_card_older_than_the_retention_is_refused(db):
    client = _client(db, CDS_CARD_RETENTION_DAYS=7)
    alert, assessment = _cards(client)
    assert client.post(FEEDBACK_URL, json={"feedback": [_accept(assessment)]}).status_code == 200
    _age_cards(db, 8)
    response = client.post(FEEDBACK_URL, json={"feedback": [_override(alert)]})
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["feedback[0].card"]


def test_expired_card_records_are_deleted_and_their_feedback_still_counts(db):
    store = FeedbackStore(db, card_retention=timedelta(days=7))
    client = _client(db, CDS_CARD_RETENTION_DAYS=7)
    _alert, assessment = _cards(client)
    assert client.post(FEEDBACK_URL, json={"feedback": [_accept(assessment)]}).status_code == 200
    _age_cards(db, 8)
    assert store.purge_expired_cards() == 2
    assert store.counts_by_card_type() == [("assessment:metastatic", 0, 1, 0)]


def test_a_hook_call_sweeps_the_expired_records(db):
    client = _client(db, CDS_CARD_RETENTION_DAYS=7)
    _cards(client)
    _age_cards(db, 8)
    fresh = _client(db, CDS_CARD_RETENTION_DAYS=7)  # a new worker: its first call sweeps
    _cards(fresh)
    with closing(sqlite3.connect(db)) as connection:
        assert connection.execute("SELECT COUNT(*) FROM issued_card").fetchone() == (2,)
