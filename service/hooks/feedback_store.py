"""Durable record of the cards issued and of what clinicians did with them.

Feedback only names a card by its uuid, so the service also records each card it issues with its
type, the uuids of its suggestions and the override reasons it offered (code and the display the
service wrote); feedback is then checked against what the card really offered, and the report can
say, per card type, how often cards were accepted or overridden and why. Statistics a client cannot
skew: one stored outcome per card, hookInstance and outcome (a repeat changes nothing), an override
reason stored with the service's own display (never the client's text), a comment stripped of
control characters. A card's record expires after the configured retention, so the table does not
grow with every hook call forever; feedback keeps its card type and counts on in the report.
SQLite with one short transaction per write keeps every committed row across restarts; an older
database is migrated in place.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from .sqlite_files import SqliteFile
from .free_text import printable
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
    received_at TEXT NOT NULL,
    card_type TEXT,
    hook_instance TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS feedback_card ON feedback (card_uuid);
CREATE INDEX IF NOT EXISTS issued_card_age ON issued_card (issued_at);
"""

# One stored outcome per card, hookInstance and outcome: created after the migration has removed
# the repeats an older database may hold.
_ONE_OUTCOME = ("CREATE UNIQUE INDEX IF NOT EXISTS feedback_once"
                " ON feedback (card_uuid, hook_instance, outcome)")

# Columns added after the first release: (name, declaration) added to older databases when missing.
_ADDED_COLUMNS = (("issued_card", "suggestion_uuids", "TEXT NOT NULL DEFAULT '[]'"),
                  ("issued_card", "override_codes", "TEXT NOT NULL DEFAULT '[]'"))

# How often (seconds) one store deletes the expired card records: a sweep per hook call would
# be a write per call for nothing.
_PURGE_INTERVAL = 600.0


@dataclass(frozen=True, slots=True)
class CardRecord:
    """What a card offered, as feedback on it must match: its suggestions and its override reasons (system, code)."""

    uuid: str
    card_type: str
    suggestion_uuids: tuple[str, ...] = ()
    override_codes: tuple[tuple[str, str], ...] = ()
    # The display the service wrote for each override reason, in the order of override_codes.
    override_displays: tuple[str, ...] = ()
    hook_instance: str = ""

    def display_of(self, system: str | None, code: str | None) -> str | None:
        """The display this card gave the override reason (system, code), else None."""
        for offered, display in zip(self.override_codes, self.override_displays):
            if offered == (system, code):
                return display
        return None


def _columns(connection: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}


def _migrate(connection: sqlite3.Connection) -> None:
    for table, column, declaration in _ADDED_COLUMNS:
        if column not in _columns(connection, table):
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    if "hook_instance" not in _columns(connection, "feedback"):
        # Feedback from before outcomes were made unique: each row takes its card's type and
        # hookInstance, repeats of one outcome on one card are folded into the first, and the
        # override display, which was the client's own text, is dropped (the report shows the code).
        connection.execute("ALTER TABLE feedback ADD COLUMN card_type TEXT")
        connection.execute("ALTER TABLE feedback ADD COLUMN hook_instance TEXT NOT NULL DEFAULT ''")
        connection.execute("UPDATE feedback SET override_display = NULL, "
                           "card_type = (SELECT card_type FROM issued_card c WHERE c.uuid = feedback.card_uuid), "
                           "hook_instance = COALESCE((SELECT hook_instance FROM issued_card c"
                           " WHERE c.uuid = feedback.card_uuid), '')")
        connection.execute("DELETE FROM feedback WHERE id NOT IN"
                           " (SELECT MIN(id) FROM feedback GROUP BY card_uuid, hook_instance, outcome)")
    connection.execute(_ONE_OUTCOME)


def _timestamp(moment: datetime) -> str:
    """UTC, to the second, one fixed format: stored instants then compare as text."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _now() -> str:
    return _timestamp(datetime.now(timezone.utc))


def _override_reasons(text: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """(codes, displays) from the stored JSON: [system, code, display] (or [system, code] before displays)."""
    reasons = json.loads(text)
    codes = tuple((str(reason[0]), str(reason[1])) for reason in reasons)
    displays = tuple(str(reason[2]) if len(reason) > 2 else str(reason[1]) for reason in reasons)
    return codes, displays


class FeedbackStore:
    """Cards issued and feedback received, in one SQLite file."""

    def __init__(self, db_path: str | Path, *, card_retention: timedelta = timedelta(days=30)) -> None:
        self.db_path = Path(db_path)
        self.card_retention = card_retention
        self._last_purge = float("-inf")
        self._file = SqliteFile(self.db_path)  # one connection per thread; WAL, so a kill -9 loses no commit
        with self._file.connection() as connection:
            connection.executescript(_SCHEMA)
            _migrate(connection)

    def _oldest_kept(self) -> str:
        return _timestamp(datetime.now(timezone.utc) - self.card_retention)

    def purge_expired_cards(self) -> int:
        """Delete the records of cards issued longer ago than the retention; returns how many."""
        with self._file.connection() as connection:
            deleted = connection.execute("DELETE FROM issued_card WHERE issued_at < ?", (self._oldest_kept(),)).rowcount
        self._last_purge = time.monotonic()
        return deleted

    def record_cards(self, service_id: str, hook_instance: str, cards: Iterable[CardRecord]) -> None:
        """Remember issued cards with what they offered."""
        issued = _now()
        rows = [(card.uuid, service_id, card.card_type, hook_instance, issued, json.dumps(list(card.suggestion_uuids)),
                 json.dumps([[*code, display] for code, display in zip(card.override_codes, card.override_displays)]
                            if len(card.override_displays) == len(card.override_codes)
                            else [list(code) for code in card.override_codes]))
                for card in cards]
        if time.monotonic() - self._last_purge > _PURGE_INTERVAL:
            self.purge_expired_cards()
        if not rows:
            return
        with self._file.connection() as connection:
            connection.executemany(
                "INSERT OR IGNORE INTO issued_card (uuid, service_id, card_type, hook_instance, issued_at,"
                " suggestion_uuids, override_codes) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def issued_card(self, service_id: str, card_uuid: str) -> CardRecord | None:
        """The card `service_id` issued under `card_uuid`, or None (never issued, by another service, or expired)."""
        with self._file.connection() as connection:
            row = connection.execute(
                "SELECT uuid, card_type, suggestion_uuids, override_codes, hook_instance FROM issued_card"
                " WHERE uuid = ? AND service_id = ? AND issued_at >= ?",
                (card_uuid, service_id, self._oldest_kept())).fetchone()
        if row is None:
            return None
        codes, displays = _override_reasons(row[3])
        return CardRecord(row[0], row[1], tuple(json.loads(row[2])), codes, displays, row[4])

    def record_feedback(self, service_id: str, entries: Iterable[FeedbackEntry],
                        cards: Mapping[str, CardRecord] | None = None) -> int:
        """Store the entries in one transaction; returns how many were new.

        `cards`: the issued card each entry names, by uuid (feedback_checks found them). An outcome
        already stored for its card and hookInstance is not stored again; an override reason is
        stored with the display the card gave it, the client's text never.
        """
        received = _now()
        cards = cards or {}
        rows = []
        for e in entries:
            card = cards.get(e.card)
            display = card.display_of(e.override_system, e.override_code) if card is not None else None
            comment = printable(e.user_comment) if e.user_comment is not None else None
            rows.append((service_id, e.card, e.outcome, json.dumps(list(e.accepted_suggestions)), e.override_system,
                         e.override_code, display, comment, e.outcome_timestamp, received,
                         card.card_type if card is not None else None, card.hook_instance if card is not None else ""))
        with self._file.connection() as connection:
            before = connection.total_changes
            connection.executemany(
                "INSERT OR IGNORE INTO feedback (service_id, card_uuid, outcome, accepted_suggestions, override_system,"
                " override_code, override_display, user_comment, outcome_timestamp, received_at, card_type,"
                " hook_instance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            return connection.total_changes - before

    def counts_by_card_type(self) -> list[tuple[str, int, int, int]]:
        """(card type, cards issued, accepted, overridden), feedback on unknown cards as 'unknown'."""
        query = """
            SELECT card_type, SUM(issued), SUM(accepted), SUM(overridden) FROM (
                SELECT card_type, 1 AS issued, 0 AS accepted, 0 AS overridden FROM issued_card
                UNION ALL
                SELECT COALESCE(f.card_type, c.card_type, 'unknown'), 0,
                       f.outcome = 'accepted', f.outcome = 'overridden'
                FROM feedback f LEFT JOIN issued_card c ON c.uuid = f.card_uuid
            ) GROUP BY card_type ORDER BY card_type
        """
        with self._file.connection() as connection:
            return [(row[0], int(row[1]), int(row[2]), int(row[3])) for row in connection.execute(query)]

    def override_reasons(self) -> list[tuple[str, str, int]]:
        """(card type, override reason, count), most frequent first, grouped by the service's reason code.

        The reason is named by the display the service issued for it (or its code, for feedback
        stored before displays were the service's own).
        """
        query = """
            SELECT COALESCE(f.card_type, c.card_type, 'unknown') AS type,
                   COALESCE(MAX(f.override_display), f.override_code, 'no reason given'), COUNT(*)
            FROM feedback f LEFT JOIN issued_card c ON c.uuid = f.card_uuid
            WHERE f.outcome = 'overridden'
            GROUP BY type, f.override_system, f.override_code ORDER BY 1, 3 DESC, 2
        """
        with self._file.connection() as connection:
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
    # Whatever the database holds is printed escaped: no stored text reaches the terminal as a control.
    rows = [(printable(card_type, escape=True), *counts) for card_type, *counts in rows]
    width = max(len("card type"), *(len(row[0]) for row in rows))
    lines = [f"{'card type':<{width}}  {'issued':>6}  {'accepted':>8}  {'overridden':>10}"]
    for card_type, issued, accepted, overridden in rows:
        lines.append(f"{card_type:<{width}}  {issued:>6}  {accepted:>8}  {overridden:>10}")
    reasons = store.override_reasons()
    if reasons:
        lines.append("")
        lines.append("Override reasons:")
        lines.extend(f"  {printable(card_type, escape=True)}: {printable(reason, escape=True)} ({count})"
                     for card_type, reason, count in reasons)
    return "\n".join(lines) + "\n"
