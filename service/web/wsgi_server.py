"""Run the app under gunicorn, configured from the settings and the command line rather than a config file.

How the settings were chosen (measured with `python bench/perf.py` on a 2-core machine; the README's
Performance section has the figures):
- `reuse_port`: every worker binds its own listening socket (SO_REUSEPORT) and the kernel spreads
  new connections across them. With one socket shared by all workers, whichever worker woke first
  took every keep-alive connection of a burst and kept it, so one worker served all the load while
  the others sat idle. The kernel's spread is by a hash, so a few keep-alive connections often land
  unevenly (8 on two workers split 5/3 or 6/2 in 5 of 11 runs); a worker holding more than its share
  closes a connection after its answer, and the client's next one is spread again
  (connection_balance.py).
- one worker per core by default: the assessment is CPU-bound Python, so a process per core is
  what runs requests in parallel; more processes only share the same cores.
- few threads per worker (2): threads of one process share its interpreter lock, so more of them
  do not run more requests at once; they only slice each request thinner and stretch every
  latency. Two keep a worker busy while one thread waits on the network.
- bounded queues: a worker runs `threads` requests at once; a burst beyond that waits its turn,
  first in the worker (at most gunicorn's `worker_connections`, 1000, connections) and then in the
  worker's kernel backlog (`SERVE_BACKLOG`), instead of being turned away; only beyond both is a
  connection refused, which a client sees at once rather than after a timeout.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication

from . import connection_balance

if TYPE_CHECKING:
    from flask import Flask

# Allocations between two collections of the youngest generation (CPython's default: 700). A
# patient-view call builds hundreds of thousands of short-lived dicts and lists (the parsed JSON,
# the gathered Bundle); at 700 the collector ran hundreds of times a call.
YOUNG_GENERATION_THRESHOLD = 10_000


def settle_heap() -> None:
    """Once the app is built: move every object alive now (compiled rules, terminology, models) out of
    the collector's view, and collect the youngest generation less often.

    Collections of the oldest generation otherwise walked all of the app's start-up objects again and
    again while a large request was parsed, for garbage that is never there: they live as long as the
    worker. Cyclic garbage is still collected; only the start-up objects are no longer traversed.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)


class _GunicornApplication(BaseApplication):
    """Gunicorn driven from Python: one app factory call per worker."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        """Hand our options to gunicorn instead of a config file."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> "Flask":
        """The WSGI app, built once in each worker."""
        from .app import create_app

        app = create_app()
        settle_heap()
        return app


def cores_available() -> int:
    """The cores this process may run on (its CPU affinity, which containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def gunicorn_options(*, host: str, port: int, workers: int | None, threads: int, backlog: int,
                     timeout: int) -> dict[str, Any]:
    """The gunicorn settings `serve` runs with; `workers` None means one per core."""
    return {
        "child_exit": _child_exit,
        "bind": f"{host}:{port}",
        "workers": max(1, workers or cores_available()),
        # Threaded workers: a client that sends its body slowly holds one thread, not a whole worker
        # (with sync workers, two idle connections stalled the service for a minute). In production,
        # a buffering reverse proxy in front is still the right place to absorb slow clients.
        # gthread, answering what its HTTP parser refuses with an OperationOutcome (gunicorn_worker.py).
        "worker_class": "service.web.gunicorn_worker.OutcomeThreadWorker",
        "threads": max(1, threads),
        "reuse_port": True,
        "backlog": max(1, backlog),
        "timeout": timeout,
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        # Headers and request lines beyond these are refused with 4xx by gunicorn itself.
        "limit_request_line": 8190,
        "limit_request_fields": 100,
        # gunicorn's control socket lives at one path per user: two instances would fight over it,
        # and the service needs no runtime control beyond signals.
        "control_socket_disable": True,
    }


def _child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live-only metric files and free its connection-count slot. Imports
    prometheus_client alone of what the master had not loaded, never the service's modules, so the
    master keeps preloading nothing of the service."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    if connection_balance.SHARES is not None:
        connection_balance.SHARES.release(worker.pid)


def serve(*, host: str, port: int, workers: int | None, threads: int, backlog: int, timeout: int) -> None:
    """Serve until interrupted. Access logs stay off: the app logs method, path and status only.

    Prometheus multiprocess mode: every worker writes its figures under one directory, so a scrape
    answered by any worker reports them all (service/web/metrics.py). The directory is set before the
    workers start, since prometheus_client reads it when first imported, and removed at exit.
    """
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="calcinosis-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    options = gunicorn_options(host=host, port=port, workers=workers, threads=threads, backlog=backlog,
                               timeout=timeout)
    connection_balance.install(options["workers"])  # before the fork: every worker inherits the counts
    try:
        _GunicornApplication(options).run()
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
