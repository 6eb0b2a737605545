"""SQLite files the hooks keep (token ids used, cards issued, feedback), opened once per thread.

Opening a connection and committing with a full disk sync on every hook call cost tens of
milliseconds a call. Each thread keeps one connection per file instead, in WAL mode with
`synchronous=NORMAL`: a commit survives the process being killed (the write-ahead log is on disk),
only a power loss may drop the last commits, and readers never wait on the writer. A connection is
never shared across threads or carried over a fork (each process opens its own).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

BUSY_TIMEOUT_SECONDS = 10


class SqliteFile:
    """One SQLite file, with a connection per thread of this process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use in this process and thread)."""
        held = getattr(self._local, "held", None)
        if held is not None and held[0] == os.getpid():
            return held[1]
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=True)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        self._local.held = (os.getpid(), connection)
        return connection
