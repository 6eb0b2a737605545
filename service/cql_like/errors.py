"""Errors of the cql_like language.

One tree for every stage so callers catch `CqlError` and still know what went
wrong: syntax, names, types (all found when a library loads, with positions)
and evaluation (found on a patient's data, naming the define).
"""

from __future__ import annotations

import difflib
from typing import Iterable


class CqlError(Exception):
    """Base of all rule-language errors; str() shows file:line:col, the line and a caret."""

    kind = "cql"

    def __init__(self, message: str, *, filename: str | None = None, line: int | None = None,
                 column: int | None = None, source_line: str | None = None) -> None:
        self.message = message
        self.filename = filename
        self.line = line
        self.column = column
        self.source_line = source_line
        super().__init__(self.render())

    @property
    def location(self) -> str:
        """file:line:col (as much of it as is known)."""
        parts = [self.filename or "<string>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def render(self) -> str:
        """The message as file:line:col, followed by the source line and a caret under the column when known."""
        text = f"{self.location}: {self.kind} error: {self.message}"
        if self.source_line is not None and self.column is not None:
            line = self.source_line.rstrip("\n")
            caret_pad = "".join(c if c == "\t" else " " for c in line[: max(self.column - 1, 0)])
            text += f"\n    {line}\n    {caret_pad}^"
        return text

    def __str__(self) -> str:
        return self.render()


class CqlSyntaxError(CqlError):
    """The text is not in the language's grammar."""

    kind = "syntax"


class CqlNameError(CqlError):
    """A name (define, parameter, alias, value set, function, field) does not resolve."""

    kind = "name"

    @staticmethod
    def suggestion(name: str, candidates: Iterable[str]) -> str:
        """' (did you mean 'X'?)' for the closest candidate, or ''."""
        close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
        return f" (did you mean '{close[0]}'?)" if close else ""


class CqlTypeError(CqlError):
    """An operator or function is applied to values of the wrong type."""

    kind = "type"


class CqlEvaluationError(CqlError):
    """Evaluation failed on data (e.g. incompatible units); the message names the define."""

    kind = "evaluation"

    def __init__(self, message: str, *, define: str | None = None, **kwargs) -> None:
        self.define = define
        if define is not None:
            message = f'in define "{define}": {message}'
        super().__init__(message, **kwargs)


class CqlCompilationError(CqlError):
    """A library failed to load; `.errors` holds every error found, in source order."""

    kind = "compilation"

    def __init__(self, errors: list[CqlError]) -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else None
        super().__init__(
            f"{len(self.errors)} error(s)" + (f"; first: {first.message}" if first else ""),
            filename=first.filename if first else None,
            line=first.line if first else None,
            column=first.column if first else None,
        )

    def render(self) -> str:
        """Every collected error rendered, one after another."""
        if not getattr(self, "errors", None):
            return super().render()
        return "\n".join(e.render() for e in self.errors)
