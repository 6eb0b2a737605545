"""Readable, CQL-literal-like rendering of runtime values (for `rules eval` and ToString)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from .deep import run_deep
from .quantity import Quantity
from .valuesets import ValueSet
from .values import Code, Concept, CqlTuple, Interval, Record


def format_decimal(value: Decimal) -> str:
    """Plain notation, trailing zeros dropped but one decimal place kept: 2.5, 3.0."""
    text = format(value.normalize(), "f")
    if "." not in text:
        text += ".0"
    return text


def _quantity_number(value: Decimal) -> str:
    """Trailing zeros dropped, but a value written with decimals keeps one: 11.0, 10.5, 10."""
    text = format(value.normalize(), "f")
    if "." not in text and value.as_tuple().exponent < 0:
        text += ".0"
    return text


def _string_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _format_datetime(value: datetime) -> str:
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    if value.utcoffset() == timezone.utc.utcoffset(None):
        text = text.replace("+00:00", "Z")
    return text


def format_value(value: Any) -> str:
    """CQL-literal-like text of a runtime value; values nested very deeply are rendered on a large stack."""
    try:
        return _format(value)
    except RecursionError:
        return run_deep(_format, value)


def _format(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, str):
        return _string_literal(value)
    if isinstance(value, Quantity):
        return f"{_quantity_number(value.value)} {_string_literal(value.unit)}"
    if isinstance(value, datetime):
        return "@" + _format_datetime(value)
    if isinstance(value, date):
        return "@" + value.isoformat()
    if isinstance(value, list):
        return "{ " + ", ".join(_format(v) for v in value) + " }" if value else "{ }"
    if type(value) is CqlTuple:
        if not value:
            return "Tuple { : }"
        return "Tuple { " + ", ".join(f"{k}: {_format(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Interval):
        return ("Interval" + ("[" if value.low_closed else "(") + _format(value.low) + ", "
                + _format(value.high) + ("]" if value.high_closed else ")"))
    if isinstance(value, Code):
        display = f" display {_string_literal(value.display)}" if value.display else ""
        return f"Code {_string_literal(value.code)} from {_string_literal(value.system or '')}{display}"
    if isinstance(value, Concept):
        return "Concept { " + ", ".join(_format(c) for c in value.codes) + " }"
    if isinstance(value, Record):
        return f"{value.type_name}({value.source or '?'})"
    if isinstance(value, ValueSet):
        return f"ValueSet {_string_literal(value.url)}"
    return repr(value)


def to_string(value: Any) -> str | None:
    """ToString: like format_value but strings and numbers without literal decoration."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Quantity):
        return f"{_quantity_number(value.value)} '{value.unit}'"
    if isinstance(value, (date, datetime)):
        return _format(value)[1:]
    return _format(value)
