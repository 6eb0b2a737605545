"""A bounded number of reads in flight to each FHIR server, so one slow server cannot hold every thread.

Without a bound, a FHIR server that hangs ties up every worker thread that reads from it until
each call's total deadline passes, and `/healthz` and `$assess` queue behind them. With one, the
reads beyond the bound are refused at once (the hook call answers 412, "the server is busy")
and the other threads stay free. The bound is per worker process and per server origin
(scheme, host and port: every path under an allowlisted base reaches the same server).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from ..errors import CalcinosisError


class ServerBusy(CalcinosisError):
    """Every slot for this server is taken: the read was not attempted."""


class ServerBulkheads:
    """One non-blocking set of slots per server origin, shared by all threads of the process."""

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max(1, int(max_in_flight))
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    def _semaphore(self, server: str) -> threading.BoundedSemaphore:
        with self._lock:
            semaphore = self._slots.get(server)
            if semaphore is None:
                semaphore = self._slots[server] = threading.BoundedSemaphore(self.max_in_flight)
            return semaphore

    @contextmanager
    def slot(self, server: str) -> Iterator[None]:
        """Hold one slot of `server` for the block; ServerBusy at once (no waiting) when none is free."""
        semaphore = self._semaphore(server)
        if not semaphore.acquire(blocking=False):
            raise ServerBusy(server)
        try:
            yield
        finally:
            semaphore.release()
