"""Do the rule files on disk still compile? The readiness probe's question about the rules.

An app compiles its rule library once, when it is built, and never rereads it; the next app built
(a restart, or gunicorn HUP) compiles the files as they are then. A library edited into one that
does not compile would stop those new workers, so readiness checks the files too: their content
is fingerprinted on each probe and compiled again only when it changed.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..cql_like import check_library, load_model_info
from ..cql_like.errors import CqlError


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """The outcome of compiling the rule files: `errors` as `file:line:col message`, empty when they compile."""

    fingerprint: str
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def rule_files(settings: Mapping[str, Any]) -> list[Path]:
    """The files a new app would compile: the library, its model and every value set file."""
    files = [Path(settings["RULE_LIBRARY"]), Path(settings["MODEL_INFO"])]
    files += sorted(Path(settings["VALUESET_DIR"]).glob("*.json"))
    return files


def fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path).encode("utf-8") + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError as error:
            digest.update(f"unreadable: {error.strerror}".encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


class RuleFilesChecker:
    """Compiles the rule files when their content changed since the last check; thread-safe."""

    def __init__(self, settings: Mapping[str, Any], *, compiled: bool = False) -> None:
        """`compiled`: the files as they are now were just compiled cleanly (by the app's Assessor), so
        they need no second compilation until they change."""
        self._settings = dict(settings)
        self._lock = threading.Lock()
        self._last: RuleCheck | None = RuleCheck(fingerprint(rule_files(self._settings)), ()) if compiled else None

    def check(self) -> RuleCheck:
        current = fingerprint(rule_files(self._settings))
        with self._lock:
            if self._last is None or self._last.fingerprint != current:
                self._last = RuleCheck(current, tuple(_compile_errors(self._settings)))
            return self._last


def _compile_errors(settings: Mapping[str, Any]) -> list[str]:
    try:
        model = load_model_info(Path(settings["MODEL_INFO"]))
        errors = check_library(Path(settings["RULE_LIBRARY"]), model=model, valueset_dir=Path(settings["VALUESET_DIR"]))
    except (CqlError, OSError, ValueError) as error:
        return [_located(error)]
    return [_located(error) for error in errors]


def _located(error: Exception) -> str:
    filename = getattr(error, "filename", None)
    line = getattr(error, "line", None)
    where = f"{Path(filename).name}:{line}: " if filename and line else (f"{Path(filename).name}: " if filename else "")
    message = getattr(error, "message", None) or str(error)
    return f"{where}{message}"[:300]
