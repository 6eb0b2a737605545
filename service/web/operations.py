"""`/readyz`: may this instance take traffic? The compiled rule library is loaded, the rule files on
disk still compile (the next worker started, on a restart or HUP, compiles them), and the storage
the service writes to (CDS Hooks feedback, stored trend reports) is writable.

`/healthz` stays the bare liveness probe; `/readyz` answers 503, naming each failed check, when any
check fails. It reads no patient data, and its answer names files by name only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from flask import Flask, Response

from ..knowledge_artifacts.rule_check import RuleFilesChecker
from .app_state import app_state
from .http_io import json_response

_CHECKER = "calcinosis_rule_files_check"


def storage_paths(settings: Mapping[str, Any]) -> list[Path]:
    """The SQLite files the service writes: feedback (always) and trend reports (when report links are on)."""
    feedback = Path(settings["CDS_FEEDBACK_DB"])
    paths = [feedback]
    if settings.get("UI_REPORT_LINKS"):
        paths.append(Path(settings.get("UI_REPORT_DB") or feedback.with_name("ui-reports.sqlite3")))
    return paths


def storage_problem(path: Path) -> str | None:
    """None when a file can be written at `path` (its folder is created as the stores would); else why not."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not os.access(path, os.W_OK):
            return f"{path.name} is not writable"
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".readyz-"):
            pass
    except OSError as error:
        return f"cannot write beside {path.name}: {error.strerror or type(error).__name__}"
    return None


def readiness(app: Flask) -> tuple[bool, dict[str, Any]]:
    """(ready, the checks as a JSON-ready dict)."""
    state = app_state(app)
    library = state.assessor.library
    rules = app.extensions[_CHECKER].check()
    rules_check: dict[str, Any] = {"ok": rules.ok, "compiled": f"{library.name} {library.version}"}
    if not rules.ok:
        rules_check["errors"] = list(rules.errors[:5])
        rules_check["detail"] = ("the rule files on disk do not compile: a restarted worker would fail to start "
                                 "(this one still serves the version it compiled)")
    problems = {path.name: problem for path in storage_paths(state.settings)
                if (problem := storage_problem(path)) is not None}
    storage_check: dict[str, Any] = {"ok": not problems}
    if problems:
        storage_check["errors"] = list(problems.values())
    ready = rules.ok and not problems
    return ready, {"status": "ready" if ready else "not ready", "checks": {"rules": rules_check,
                                                                          "storage": storage_check}}


def init_app(app: Flask) -> None:
    # The app's Assessor compiled these files (create_app refuses one built for other settings).
    app.extensions[_CHECKER] = RuleFilesChecker(app_state(app).settings, compiled=True)

    @app.get("/readyz")
    def ready() -> Response:
        """200 when every check passes, else 503; the body lists the checks either way."""
        ok, body = readiness(app)
        return json_response(body, status=200 if ok else 503)
