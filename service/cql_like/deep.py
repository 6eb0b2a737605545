"""Running the checker, code generator and evaluator on deeply nested libraries.

Each walks expressions recursively (a few Python frames per level). Libraries
nested deeper than ast.SHALLOW_NESTING run on a worker thread with a large
stack and, while any such thread runs, a recursion limit sized for
ast.MAX_NESTING levels; everything else runs on the caller's thread untouched.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable, TypeVar

from .ast import MAX_NESTING

R = TypeVar("R")

FRAMES_PER_LEVEL = 12
DEEP_RECURSION_LIMIT = MAX_NESTING * FRAMES_PER_LEVEL + 2000
DEEP_STACK_BYTES = 512 * 1024 * 1024

_lock = threading.Lock()
_running = 0
_saved_limit: int | None = None


def run_deep(function: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """function(*args, **kwargs) on a large-stack thread; its result or exception is passed through."""
    global _running, _saved_limit
    outcome: dict[str, Any] = {}

    def target() -> None:
        """Run on the worker thread, keeping the result or exception for the caller's thread."""
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    with _lock:
        if _running == 0:
            _saved_limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(_saved_limit, DEEP_RECURSION_LIMIT))
        _running += 1
    try:
        with _lock:
            previous_size = threading.stack_size(DEEP_STACK_BYTES)
            try:
                worker = threading.Thread(target=target, name="cql-deep", daemon=True)
                worker.start()
            finally:
                threading.stack_size(previous_size)
        worker.join()
    finally:
        with _lock:
            _running -= 1
            if _running == 0 and _saved_limit is not None:
                sys.setrecursionlimit(_saved_limit)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
