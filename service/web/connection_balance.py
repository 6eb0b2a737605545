"""Open connections per worker process, shared by the workers of one server, so keep-alive load stays even.

With `reuse_port` the kernel hands each new connection to one worker's socket by a hash of its
addresses, and a keep-alive connection then stays with that worker for as long as it lives. The
8 connections of a load generator landed 5/3 or 6/2 on two workers in 5 of 11 runs; at 6/2, the
busier worker's half of the requests each wait behind five others while the other half wait behind
one. So a worker that holds more than its share of the open connections answers the request in hand
with `Connection: close`: the client opens a new connection, which the kernel hashes again, and
within a few requests every worker holds its share. A reconnection on a local network costs a
fraction of a millisecond; a request queued behind two extra ones costs two requests' time.

The counts live in memory the server's master allocates before it forks the workers; each worker
claims a slot at start and keeps its own count current. A count read a moment late only delays a
shed by a request, and a worker never sheds when it holds no more than its share.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from typing import Any


class ConnectionShares:
    """A slot per worker process: its pid and how many connections it holds open."""

    def __init__(self, slots: int) -> None:
        context = multiprocessing.get_context("fork")
        self._lock = context.Lock()
        self._pids: Any = context.RawArray("i", max(1, slots))
        self._counts: Any = context.RawArray("i", max(1, slots))

    def claim(self, pid: int) -> int | None:
        """A free slot for the worker `pid` (one left by a worker that is gone counts as free); None if all are held."""
        with self._lock:
            for slot, holder in enumerate(self._pids):
                if holder == 0 or holder == pid or not _alive(holder):
                    self._pids[slot] = pid
                    self._counts[slot] = 0
                    return slot
        return None

    def release(self, pid: int) -> None:
        """Free the slot of a worker that has exited (the master calls this when it reaps one)."""
        with self._lock:
            for slot, holder in enumerate(self._pids):
                if holder == pid:
                    self._pids[slot] = 0
                    self._counts[slot] = 0

    def publish(self, slot: int, open_connections: int) -> None:
        """Record how many connections the worker in `slot` holds now (one integer store: no lock needed)."""
        self._counts[slot] = open_connections

    def over_share(self, slot: int) -> bool:
        """True when the worker in `slot` holds more connections than an even spread would give it."""
        held = [count for holder, count in zip(self._pids, self._counts) if holder]
        if len(held) < 2:
            return False
        own = self._counts[slot]
        return own > math.ceil(sum(held) / len(held))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to reuse
        return True
    return True


# Set by the serving process before gunicorn forks its workers, which inherit it; None in a process
# that serves with one worker or was not started by `serve`.
SHARES: ConnectionShares | None = None


def install(workers: int) -> ConnectionShares | None:
    """Allocate the shared counts for a server of `workers` processes (none needed for one)."""
    global SHARES
    SHARES = ConnectionShares(workers) if workers > 1 else None
    return SHARES
