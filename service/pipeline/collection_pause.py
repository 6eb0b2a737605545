"""Automatic cyclic garbage collection paused for the span of an assessment.

A decoded Bundle is tens of thousands of dicts and lists, and an assessment allocates as many
again (facts, records, rule values). Python's generational collector then runs several young
collections and, now and then, a full one during the assessment, each walking that live data only
to find it still alive: a fifth to a quarter of a large in-process `$assess` under CPython's default
thresholds, about a tenth of the 2.2 MB Synthea sample under a served worker's (`settle_heap`: start-up
objects frozen, young threshold 10,000). An assessment leaves no cyclic garbage (tested): reference
counting frees what it allocates, so the pause costs no memory.

`collection_paused()` is re-entrant and shared by threads (the served path runs requests
concurrently in one process): the first span to enter disables automatic collection, the last to
leave enables it again, on success or on an exception. A span never collects by itself: the
garbage of a request is collected at the next threshold crossing after it. So that overlapping
requests cannot keep collection off indefinitely (and cycles piling up), a pause that has lasted
MAX_PAUSE_SECONDS is ended by the next span to enter or leave; collection then stays on until
every span then running has left. Collection already disabled when a pause would begin is left alone.
"""

from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager
from typing import Iterator

# Longer than an assessment of the largest accepted Bundle takes on an idle machine: a pause this old
# means requests keep overlapping, and collection is let run again.
MAX_PAUSE_SECONDS = 5.0

_lock = threading.Lock()
_spans = 0  # spans entered and not yet left, in every thread
_paused_at: float | None = None  # when this module disabled collection; None when it has not


@contextmanager
def collection_paused() -> Iterator[None]:
    """Automatic garbage collection off while the block runs (see the module docstring)."""
    _enter()
    try:
        yield
    finally:
        _leave()


def _enter() -> None:
    global _spans, _paused_at
    with _lock:
        if _paused_at is not None and time.monotonic() - _paused_at > MAX_PAUSE_SECONDS:
            _resume()
        elif _spans == 0 and _paused_at is None and gc.isenabled():
            gc.disable()
            _paused_at = time.monotonic()
        _spans += 1


def _leave() -> None:
    global _spans
    with _lock:
        _spans -= 1
        if _paused_at is not None and (_spans == 0 or time.monotonic() - _paused_at > MAX_PAUSE_SECONDS):
            _resume()


def _resume() -> None:
    """Enable collection again (called with the lock held)."""
    global _paused_at
    _paused_at = None
    gc.enable()


def is_paused() -> bool:
    """True while this module holds automatic collection off."""
    with _lock:
        return _paused_at is not None
