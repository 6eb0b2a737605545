"""Run the app under gunicorn, configured from the command line rather than a config file."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication


class _GunicornApplication(BaseApplication):
    """Gunicorn driven from Python: one app factory call per worker."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from .app import create_app

        return create_app()


def serve(*, host: str, port: int, workers: int, timeout: int) -> None:
    """Serve until interrupted. Access logs stay off: the app logs method, path and status only."""
    _GunicornApplication({
        "bind": f"{host}:{port}",
        "workers": max(1, workers),
        "timeout": timeout,
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        # Headers and request lines beyond these are refused with 4xx by gunicorn itself.
        "limit_request_line": 8190,
        "limit_request_fields": 100,
    }).run()
