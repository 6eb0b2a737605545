"""Which worker accepts the next connection: one holding the fewest, over one shared listening socket.

Keep-alive connections stay with the worker that accepted them. With a listening socket per worker
(`reuse_port`) the kernel picks by a hash of the client's address and port: 8 connections to 2
workers landed 5/3, 6/2 or 7/1 in most runs, and the worker holding more served each of its
connections less often (its requests waited longer: the tail of the latency). With one shared
socket and no rule, whichever worker woke first took a whole burst. Here every worker publishes how
many connections it holds and whether it listens, in memory shared by the master and all its
workers, and stops listening while another live worker holding fewer listens; so a burst of 8 lands
4/4.

Connections a worker took while another was still loading the app stay with it; so a worker holding
two or more above the fewest any live worker holds answers its next request with `Connection: close`,
and the client, reconnecting, lands on a worker holding fewer (a keep-alive client reconnects
anyway whenever a server closes, so nothing else changes for it).

A worker stops only for another that listens, so someone always listens. One that takes a connection
while a worker holding fewer does not listen wakes that worker (SIGWINCH, which gunicorn's workers
ignore, as does any process by default: a pid reused meanwhile is unharmed), which then listens;
a worker not listening also looks again every RECHECK_SECONDS, should a wake-up be missed. A worker
that stopped publishing (exited, killed, stuck, still loading the app) is left out after
STALE_SECONDS, and the master withdraws a worker that exited, so none can hold the others back.
"""

from __future__ import annotations

import mmap
import os
import signal
import time
from typing import Callable

SLOTS = 16  # a worker's slot is its spawn number modulo this; two live workers sharing one (one outlived
# 16 spawns of others) only stop seeing each other: they may both listen, never neither
STALE_SECONDS = 3.0  # a live worker publishes at least once a second (gthread's poll timeout)
RECHECK_SECONDS = 0.05  # how long a worker that is not listening waits before looking again
WAKE_SIGNAL = signal.SIGWINCH
# Per slot: when it last published (monotonic clock; 0 when withdrawn), the connections it holds,
# 1 when it listens, and its process id.
_PUBLISHED, _CONNECTIONS, _LISTENING, _PID, _CELLS_PER_SLOT = 0, 1, 2, 3, 4


class AcceptBalance:
    """Connection counts of a gunicorn master's workers, in anonymous shared memory inherited across fork.

    Opened in the master before it forks a worker; each worker writes only its own slot (whole
    8-byte floats, which a reader never sees half-written) and reads the others'.
    """

    def __init__(self, slots: int = SLOTS, clock: Callable[[], float] = time.monotonic) -> None:
        self._slots = slots
        self._clock = clock
        self._cells: memoryview | None = None

    def open(self) -> None:
        """Make the shared memory (once, in the master: the workers it forks inherit it)."""
        if self._cells is None:
            memory = mmap.mmap(-1, self._slots * _CELLS_PER_SLOT * 8)  # MAP_SHARED: children see every write
            self._cells = memoryview(memory).cast("d")

    def slot_of(self, spawn_number: int) -> int:
        """The slot of the worker spawned `spawn_number`-th (gunicorn's worker age)."""
        return spawn_number % self._slots

    def publish(self, slot: int, connections: int, listening: bool) -> None:
        """This worker, alive now, holds `connections` and listens or not."""
        cells, base = self._cells, slot * _CELLS_PER_SLOT
        assert cells is not None, "open() first"
        cells[base + _CONNECTIONS] = float(connections)
        cells[base + _LISTENING] = 1.0 if listening else 0.0
        cells[base + _PID] = float(os.getpid())
        cells[base + _PUBLISHED] = self._clock()

    def withdraw(self, slot: int) -> None:
        """The worker of `slot` takes no more connections (stopping, exited, not started): leave it out at once."""
        if self._cells is not None:
            self._cells[slot * _CELLS_PER_SLOT + _PUBLISHED] = 0.0

    def may_listen(self, slot: int, connections: int) -> bool:
        """False while another live worker holding fewer than `connections` listens (it takes the next one)."""
        cells = self._cells
        assert cells is not None, "open() first"
        live_after = self._clock() - STALE_SECONDS
        own = slot * _CELLS_PER_SLOT
        for base in range(0, self._slots * _CELLS_PER_SLOT, _CELLS_PER_SLOT):
            if (base != own and cells[base + _PUBLISHED] > live_after and cells[base + _LISTENING]
                    and cells[base + _CONNECTIONS] < connections):
                return False
        return True

    def holds_surplus(self, slot: int, connections: int) -> bool:
        """True when another live worker holds at least two connections fewer than `connections`."""
        cells = self._cells
        assert cells is not None, "open() first"
        live_after = self._clock() - STALE_SECONDS
        own = slot * _CELLS_PER_SLOT
        for base in range(0, self._slots * _CELLS_PER_SLOT, _CELLS_PER_SLOT):
            if base != own and cells[base + _PUBLISHED] > live_after and cells[base + _CONNECTIONS] <= connections - 2:
                return True
        return False

    def wake_those_holding_fewer(self, slot: int, connections: int) -> None:
        """Wake every other live worker that holds fewer than `connections` and does not listen: it should."""
        cells = self._cells
        assert cells is not None, "open() first"
        live_after = self._clock() - STALE_SECONDS
        own = slot * _CELLS_PER_SLOT
        for base in range(0, self._slots * _CELLS_PER_SLOT, _CELLS_PER_SLOT):
            if (base != own and cells[base + _PUBLISHED] > live_after and not cells[base + _LISTENING]
                    and cells[base + _CONNECTIONS] < connections):
                try:
                    os.kill(int(cells[base + _PID]), WAKE_SIGNAL)
                except OSError:  # gone: left out once stale
                    pass
