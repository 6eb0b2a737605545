"""Helpers behind the `rules check` and `rules eval` commands (the CLI only formats and exits)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .errors import CqlError
from .formatting import format_value
from .library import DefineResult, check_library
from .model import ModelInfo


def library_files(paths: Iterable[str | Path]) -> list[Path]:
    """The .cql files named, or found (recursively, sorted) in the directories named."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(path.rglob("*.cql")))
        else:
            found.append(path)
    return found


def check_paths(paths: Iterable[str | Path], model: ModelInfo, valueset_dir: str | Path | None = None) -> list[CqlError]:
    """Every error of every library under `paths`, in file then source order ([] when all are clean)."""
    errors: list[CqlError] = []
    files = library_files(paths)
    if not files:
        return [CqlError("no .cql library files found", filename=", ".join(str(p) for p in paths) or None)]
    for path in files:
        errors.extend(check_library(path, model=model, valueset_dir=valueset_dir))
    return errors


def render_errors(errors: Iterable[CqlError]) -> str:
    """One block per error: 'file:line:col: kind error: message', the source line and a caret."""
    return "\n".join(error.render() for error in errors)


def render_result(name: str, result: DefineResult) -> str:
    """`rules eval` output: the define's value, then its evidence one reference a line."""
    lines = [f"{name} = {format_value(result.value)}"]
    if result.evidence:
        lines.append("evidence:")
        lines.extend(f"  {source}" for source in result.evidence)
    else:
        lines.append("evidence: (none)")
    return "\n".join(lines)
