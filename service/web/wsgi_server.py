"""Run the app under gunicorn, configured from the command line rather than a config file."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication

if TYPE_CHECKING:
    from flask import Flask


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

        return create_app()


def serve(*, host: str, port: int, workers: int, threads: int, timeout: int) -> None:
    """Serve until interrupted. Access logs stay off: the app logs method, path and status only.

    Threaded workers: a client that sends its body slowly holds one thread, not a whole worker
    (with sync workers, two idle connections stalled the service for a minute). In production,
    a buffering reverse proxy in front is still the right place to absorb slow clients.
    """
    # Prometheus multiprocess mode: every worker writes its figures under one directory, so a
    # scrape answered by any worker reports them all (service/web/metrics.py). Set before the
    # workers start, since prometheus_client reads it when first imported.
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="calcinosis-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    try:
        _run(host=host, port=port, workers=workers, threads=threads, timeout=timeout)
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)


def _child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live-only metric files. Imports prometheus_client alone, never the
    service's modules, so the master keeps preloading nothing of the service."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _run(*, host: str, port: int, workers: int, threads: int, timeout: int) -> None:
    _GunicornApplication({
        "child_exit": _child_exit,
        "bind": f"{host}:{port}",
        "workers": max(1, workers),
        "worker_class": "gthread",
        "threads": max(1, threads),
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
    }).run()
