"""Errors of the cql_like language: every error class of the engine, in one tree under `CqlError`.

One tree for every stage so callers catch `CqlError` and still know what went
wrong: syntax, names, types (all found when a library loads, with positions)
and evaluation (found on a patient's data, naming the define). Besides the
rendered message, errors carry structured fields a tool can use without
parsing text: `position` (file, line, column), `suggestion` (the "did you
mean" name), and for type errors `expected` and `found`.

`UnplacedError` and its subclasses are raised below the stage that knows where
in the source a failure is (units, value-level operators, regular expressions,
function signatures, string escapes); that stage catches them and raises a
positioned error, so they never leave the engine. Their str() is the bare
message, as it is embedded in the positioned one.

This module imports nothing of the engine, so every stage can import it.
"""

from __future__ import annotations

import difflib
from typing import Iterable, NamedTuple


class Position(NamedTuple):
    """Where an error is: file (None for a string source), 1-based line and column (None when unknown)."""

    file: str | None
    line: int | None
    column: int | None


def closest_name(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to a misspelt name, or None when none is close enough."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(suggestion: str | None) -> str:
    """The message suffix for a suggestion: " (did you mean 'X'?)", or "" without one."""
    return f" (did you mean '{suggestion}'?)" if suggestion is not None else ""


class CqlError(Exception):
    """Base of all rule-language errors; str() shows file:line:col, the line and a caret.

    `suggestion` is a corrected name when one was found (it is also in the message).
    """

    kind = "cql"

    def __init__(self, message: str, *, filename: str | None = None, line: int | None = None,
                 column: int | None = None, source_line: str | None = None, suggestion: str | None = None) -> None:
        self.message = message
        self.filename = filename
        self.line = line
        self.column = column
        self.source_line = source_line
        self.suggestion = suggestion
        super().__init__(self.render())

    @property
    def position(self) -> Position:
        """(file, line, column) as fields; `location` is the same rendered as text."""
        return Position(self.filename, self.line, self.column)

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


class CqlTypeError(CqlError):
    """An operator or function is applied to values of the wrong type.

    `expected` names the type (or types, "Integer or Decimal") that would fit and `found` the type
    given, as the message spells them; either is None where the error is not one type against another.
    """

    kind = "type"

    def __init__(self, message: str, *, expected: str | None = None, found: str | None = None, **kwargs) -> None:
        self.expected = expected
        self.found = found
        super().__init__(message, **kwargs)


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


class CqlValueSetError(CqlError):
    """A value set file whose definition the expander cannot honour (names the file)."""

    kind = "value set"


# ---- raised below the stage that knows the position; never leave the engine -------------------

class UnplacedError(CqlError):
    """A failure found where its place in the source is not known; the caller places it.

    str() is the bare message, which the caller embeds in a positioned error.
    """

    def render(self) -> str:
        """The bare message (the positioned error that reports it renders the location)."""
        return self.message


class EscapeError(UnplacedError, ValueError):
    """An escape sequence CQL does not define; `offset` is the backslash's index in the body."""

    kind = "syntax"

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class SignatureMismatch(UnplacedError):
    """Arguments do not fit a signature; the message says which and why.

    `expected` and `found` are the types of the offending argument when it is one type against another.
    """

    kind = "type"

    def __init__(self, message: str, *, expected: str | None = None, found: str | None = None) -> None:
        self.expected = expected
        self.found = found
        super().__init__(message)


class CqlRuntimeError(UnplacedError, ValueError):
    """A value-level failure the evaluator reports as a CqlEvaluationError."""

    kind = "evaluation"


class RegexRejected(CqlRuntimeError):
    """A pattern or text `Matches` refuses to run (message says why)."""


class UnitError(UnplacedError, ValueError):
    """A unit cannot be used as asked (base of every unit problem)."""

    kind = "unit"


class UnknownUnitError(UnitError):
    """The unit text is not valid UCUM (within the supported table).

    `position` is the 0-based offset of the offending part within `unit_text`,
    so a caller that knows where the unit literal starts can report an exact
    column; `hint` (also `suggestion`) is a corrected spelling when a common
    mistake was detected.
    """

    def __init__(self, unit_text: str, position: int, fragment: str, reason: str,
                 hint: str | None = None) -> None:
        self.unit_text = unit_text
        self.fragment = fragment
        self.reason = reason
        self.hint = hint
        message = f"{reason} at position {position} of unit '{unit_text}'"
        if hint is not None:
            message += f"; did you mean '{hint}'?"
        super().__init__(message, suggestion=hint)
        self.offset = position

    @property  # type: ignore[override]
    def position(self) -> int:  # the offset within the unit text, as callers of the unit parser read it
        """0-based offset of the offending part within `unit_text`."""
        return self.offset


class IncompatibleUnitsError(UnitError):
    """Two units have different dimensions (or one needs an offset) and cannot be converted."""

    def __init__(self, message: str, left: str, right: str) -> None:
        self.left = left
        self.right = right
        super().__init__(message)


class EvaluationFailure(UnplacedError):
    """A runtime failure at a known node; the library turns it into CqlEvaluationError naming the define."""

    kind = "evaluation"

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message, line=line, column=column)
