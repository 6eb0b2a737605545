"""Readers for FHIR data types in raw JSON -> the engine's values (Code, Concept, datetimes).

The JSON is the caller's as sent (validated, but never trusted to have the
Python types a parser would give), so every reader checks types and returns
None rather than raising.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from .cql_like.values import Code, Concept
from .fhir_dates import parse_datetime

_WHITESPACE = re.compile(r"\s+")


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def codings(codeable: Any) -> list[dict[str, Any]]:
    """The coding objects of a CodeableConcept (malformed items dropped)."""
    if not isinstance(codeable, dict):
        return []
    items = codeable.get("coding")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def concept(codeable: Any) -> Concept | None:
    """A CodeableConcept as a Concept; None when it has neither codings nor text."""
    codes = tuple(
        Code(code.strip(), text_or_none(item.get("system")), text_or_none(item.get("display")),
             text_or_none(item.get("version")))
        for item in codings(codeable)
        if isinstance(code := item.get("code"), str) and code.strip()
    )
    display = display_text(codeable)
    if not codes and display is None:
        return None
    return Concept(codes, display)


def display_text(codeable: Any) -> str | None:
    """CodeableConcept.text, else the first coding's display."""
    if not isinstance(codeable, dict):
        return None
    text = text_or_none(codeable.get("text"))
    if text is not None:
        return text
    for item in codings(codeable):
        display = text_or_none(item.get("display"))
        if display is not None:
            return display
    return None


def first_code(codeable: Any) -> str | None:
    """The first coding's code (status-like CodeableConcepts such as Condition.clinicalStatus)."""
    for item in codings(codeable):
        code = text_or_none(item.get("code"))
        if code is not None:
            return code.strip()
    return None


def normalized_name(text: str | None) -> str | None:
    """Lower-case, whitespace-collapsed text: how medication names are matched."""
    if text is None:
        return None
    collapsed = _WHITESPACE.sub(" ", text).strip().lower()
    return collapsed or None


def choice_datetime(resource: dict[str, Any], prefix: str) -> tuple[datetime | None, str | None]:
    """`<prefix>DateTime` / `<prefix>Instant` / `<prefix>Period` (start, else end).

    Returns the datetime and the element it came from; (None, element) when the
    element is there but does not parse, (None, None) when there is none.
    """
    for suffix in ("DateTime", "Instant"):
        name = prefix + suffix
        if name in resource:
            return parse_datetime(resource[name]), name
    name = prefix + "Period"
    period = resource.get(name)
    if isinstance(period, dict):
        for bound in ("start", "end"):
            if bound in period:
                return parse_datetime(period[bound]), f"{name}.{bound}"
    return None, None


def reference_of(element: Any) -> str | None:
    return text_or_none(element.get("reference")) if isinstance(element, dict) else None
