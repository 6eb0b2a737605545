"""Short-lived trend reports a card links to, when the operator enables report links.

A card's link must not carry patient data, so it names a report by an unguessable id (256 random
bits, URL-safe) and the trend stays on the server, in an SQLite file all worker processes share,
for a few minutes (UI_REPORT_TTL_SECONDS). Expired reports are deleted whenever the store is
written or read, so patient data does not outlive the link that reaches it.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

TOKEN_BYTES = 32


class ReportStore:
    """Reports by token, each with its expiry (seconds since the epoch)."""

    def __init__(self, path: str | Path, ttl_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.ttl_seconds = int(ttl_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS ui_report (token TEXT PRIMARY KEY, expires REAL NOT NULL, "
                       "body TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def put(self, report: Mapping[str, Any]) -> str:
        """Store `report` (JSON-ready) and return its new token."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self._clock()
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM ui_report WHERE expires <= ?", (now,))
            db.execute("INSERT INTO ui_report (token, expires, body) VALUES (?, ?, ?)",
                       (token, now + self.ttl_seconds, json.dumps(report)))
        return token

    def get(self, token: str) -> dict[str, Any] | None:
        """The report, or None when the token is unknown or expired."""
        if not isinstance(token, str) or not 20 <= len(token) <= 100:
            return None
        now = self._clock()
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM ui_report WHERE expires <= ?", (now,))
            row = db.execute("SELECT body FROM ui_report WHERE token = ? AND expires > ?", (token, now)).fetchone()
        return json.loads(row[0]) if row else None
