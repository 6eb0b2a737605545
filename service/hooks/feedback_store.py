"""Durable record of the cards issued and of what clinicians did with them.

Feedback only names a card by its uuid, so the service also records each card it issues with its
type, the uuids of its suggestions and the override reasons it offered; feedback is then checked
against what the card really offered, and the report can say, per card type, how often cards
were accepted or overridden and why. SQLite with one short transaction per write keeps every
committed row across restarts; a database from before the suggestion columns is migrated in place.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .request_validation import FeedbackEntry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS issued_card (
    uuid TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    card_type TEXT NOT NULL,
    hook_instance TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    suggestion_uuids TEXT NOT NULL DEFAULT '[]',
    override_codes TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id TEXT NOT NULL,
    card_uuid TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
    accepted_suggestions TEXT NOT NULL,
    override_system TEXT,
    override_code TEXT,
    override_display TEXT,
    user_comment TEXT,
    outcome_timestamp TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_card ON feedback (card_uuid);
"""


# Columns added after the first release: (name, declaration) added to older databases when missing.
_ADDED_COLUMNS = (("issued_card", "suggestion_uuids", "TEXT NOT NULL DEFAULT '[]'"),
                  ("issued_card", "override_codes", "TEXT NOT NULL DEFAULT '[]'"))


@dataclass(frozen=True, slots=True)
class CardRecord:
    """What a card offered, as feedback on it must match: its suggestions and its override reasons (system, code)."""

    uuid: str
    card_type: str
    suggestion_uuids: tuple[str, ...] = ()
    override_codes: tuple[tuple[str, str], ...] = ()


def _migrate(connection: sqlite3.Connection) -> None:
    for table, column, declaration in _ADDED_COLUMNS:
        present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class FeedbackStore:
    """Cards issued and feedback received, in one SQLite file."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as connection, connection:
            connection.executescript(_SCHEMA)
            _migrate(connection)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.db_path, timeout=10)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        return connection

    def record_cards(self, service_id: str, hook_instance: str, cards: Iterable[CardRecord]) -> None:
        """Remember issued cards with what they offered."""
        issued = _now()
        rows = [(card.uuid, service_id, card.card_type, hook_instance, issued, json.dumps(list(card.suggestion_uuids)),
                 json.dumps([list(code) for code in card.override_codes])) for card in cards]
        if not rows:
            return
        with closing(self._connect()) as connection, connection:
            connection.executemany(
                "INSERT OR IGNORE INTO issued_card (uuid, service_id, card_type, hook_instance, issued_at,"
                " suggestion_uuids, override_codes) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def issued_card(self, service_id: str, card_uuid: str) -> CardRecord | None:
        """The card `service_id` issued under `card_uuid`, or None (never issued, or by another service)."""
        with closing(self._connect()) as connection:
            row = connection.execute(
                "SELECT uuid, card_type, suggestion_uuids, override_codes FROM issued_card"
                " WHERE uuid = ? AND service_id = ?", (card_uuid, service_id)).fetchone()
        if row is None:
            return None
        return CardRecord(row[0], row[1], tuple(json.loads(row[2])), tuple(tuple(code) for code in json.loads(row[3])))

    def record_feedback(self, service_id: str, entries: Iterable[FeedbackEntry]) -> int:
        """Store every entry in one transaction; returns how many were stored."""
        received = _now()
        rows = [(service_id, e.card, e.outcome, json.dumps(list(e.accepted_suggestions)), e.override_system,
                 e.override_code, e.override_display, e.user_comment, e.outcome_timestamp, received)
                for e in entries]
        with closing(self._connect()) as connection, connection:
            connection.executemany(
                "INSERT INTO feedback (service_id, card_uuid, outcome, accepted_suggestions, override_system,"
                " override_code, override_display, user_comment, outcome_timestamp, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def counts_by_card_type(self) -> list[tuple[str, int, int, int]]:
        """(card type, cards issued, accepted, overridden), feedback on unknown cards as 'unknown'."""
        query = """
            SELECT card_type, SUM(issued), SUM(accepted), SUM(overridden) FROM (
                SELECT card_type, 1 AS issued, 0 AS accepted, 0 AS overridden FROM issued_card
                UNION ALL
                SELECT COALESCE(c.card_type, 'unknown'), 0,
                       f.outcome = 'accepted', f.outcome = 'overridden'
                FROM feedback f LEFT JOIN issued_card c ON c.uuid = f.card_uuid
            ) GROUP BY card_type ORDER BY card_type
        """
        with closing(self._connect()) as connection:
            return [(row[0], int(row[1]), int(row[2]), int(row[3])) for row in connection.execute(query)]

    def override_reasons(self) -> list[tuple[str, str, int]]:
        """(card type, override reason, count), most frequent first."""
        query = """
            SELECT COALESCE(c.card_type, 'unknown'),
                   COALESCE(f.override_display, f.override_code, 'no reason given'), COUNT(*)
            FROM feedback f LEFT JOIN issued_card c ON c.uuid = f.card_uuid
            WHERE f.outcome = 'overridden'
            GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2
        """
        with closing(self._connect()) as connection:
            return [(row[0], row[1], int(row[2])) for row in connection.execute(query)]


def feedback_report(db_path: str | Path) -> str:
    """A plain-text table of acceptance and override counts per card type, for the CLI."""
    path = Path(db_path)
    if not path.is_file():
        return f"No feedback database at {path}.\n"
    store = FeedbackStore(path)
    rows = store.counts_by_card_type()
    if not rows:
        return f"No cards or feedback recorded in {path}.\n"
    width = max(len("card type"), *(len(row[0]) for row in rows))
    lines = [f"{'card type':<{width}}  {'issued':>6}  {'accepted':>8}  {'overridden':>10}"]
    for card_type, issued, accepted, overridden in rows:
        lines.append(f"{card_type:<{width}}  {issued:>6}  {accepted:>8}  {overridden:>10}")
    reasons = store.override_reasons()
    if reasons:
        lines.append("")
        lines.append("Override reasons:")
        lines.extend(f"  {card_type}: {reason} ({count})" for card_type, reason, count in reasons)
    return "\n".join(lines) + "\n"
