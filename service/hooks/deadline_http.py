"""A requests adapter whose reads end when the caller's deadline passes, however the server trickles.

Socket timeouts bound each read from the socket, not their sum: a server that sends its status
line and headers (or its body) a byte at a time, each just inside the read timeout, would hold
the thread for hours. Inside `hard_deadline(seconds)`, every response this thread waits for gets
a timer that shuts its socket down when the seconds are up, which ends the read in progress
(the caller sees a connection error, and knows from `Watch.expired` that the deadline cut it).
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


class Watch:
    """The deadline of one block of reads, and the timers guarding the sockets read within it."""

    def __init__(self, seconds: float) -> None:
        self.expires_at = time.monotonic() + max(0.0, seconds)
        self.expired = False
        self._timers: list[threading.Timer] = []

    def guard(self, sock: socket.socket) -> None:
        """Shut `sock` down when the deadline passes (unless the block has ended by then)."""
        timer = threading.Timer(max(0.0, self.expires_at - time.monotonic()), self._cut, (sock,))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def _cut(self, sock: socket.socket) -> None:
        self.expired = True
        try:
            # socket.socket's own shutdown, also for TLS sockets: it wakes a read blocked in another thread.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def cancel(self) -> None:
        """Stop every timer: the block's reads are over."""
        for timer in self._timers:
            timer.cancel()


@contextmanager
def hard_deadline(seconds: float | None) -> Iterator[Watch | None]:
    """Every response read by this thread inside the block ends within `seconds` (None: no deadline)."""
    previous = getattr(_local, "watch", None)
    watch = Watch(seconds) if seconds is not None else None
    _local.watch = watch
    try:
        yield watch
    finally:
        _local.watch = previous
        if watch is not None:
            watch.cancel()


class _Guarded:
    """Connection mix-in: put the socket under the thread's current deadline before waiting for the answer."""

    sock: Any

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        watch = getattr(_local, "watch", None)
        if watch is not None and self.sock is not None:
            watch.guard(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _GuardedHTTPConnection(_Guarded, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_Guarded, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections honour `hard_deadline`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
