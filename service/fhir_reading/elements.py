"""Readers for FHIR data types in raw JSON -> the engine's values (Code, Concept, datetimes).

The JSON is the caller's as sent (validated, but never trusted to have the
Python types a parser would give), so every reader checks types and returns
None rather than raising.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson

from ..cql_like.values import Code, Concept
from .dates import parse_datetime

_WHITESPACE = re.compile(r"\s+")

# Text put into a record is read up to this many characters: a name or display this long is a data
# error, and unbounded text must not make matching or rationales arbitrarily costly.
MAX_TEXT_LENGTH = 1000
# Elements holding text the records read; a longer value is reported by `scan_resource`.
_TEXT_ELEMENTS = frozenset({"text", "display", "valueString"})
# Subtrees whose text no record reads.
_UNREAD_ELEMENTS = frozenset({"note", "extension", "modifierExtension", "identifier", "meta"})


def text_or_none(value: Any) -> str | None:
    """A non-blank string, cut to MAX_TEXT_LENGTH characters; None otherwise."""
    return value[:MAX_TEXT_LENGTH] if isinstance(value, str) and value.strip() else None


def scan_resource(resource: Any, max_depth: int) -> tuple[bool, list[str]]:
    """One bounded, iterative walk over a resource as sent: whether it nests deeper than `max_depth`,
    and the paths ('code.coding[0].display') of the text elements longer than MAX_TEXT_LENGTH, which
    the readers cut (codes inside codings included). Stops at the first level too deep.

    Level by level first, with no path built: nearly every resource has no text that long, and its
    depth is then all there is to tell. Paths are followed only for a resource that has one. Before
    either, `_plainly_within_limits` settles most resources from their serialized bytes.
    """
    if _plainly_within_limits(resource, max_depth):
        return False, []
    objects = [resource] if isinstance(resource, dict) else []
    arrays = [resource] if isinstance(resource, list) else []
    depth = 0
    while objects or arrays:
        values = [value for node in objects for value in node.values()]
        values += [value for node in arrays for value in node]
        if any(value.__class__ is not str and isinstance(value, str) or value.__class__ is str
               and len(value) > MAX_TEXT_LENGTH for value in values):
            return _scan_with_paths(resource, max_depth)
        below = [value for value in values if isinstance(value, (dict, list))]
        depth += 1
        if below and depth > max_depth:
            return True, []
        objects = [value for value in below if isinstance(value, dict)]
        arrays = [value for value in below if not isinstance(value, dict)]
    return False, []


def _plainly_within_limits(resource: Any, max_depth: int) -> bool:
    """True when the resource's JSON shows, without a walk in Python, that it nests at most `max_depth`
    levels and holds no string longer than MAX_TEXT_LENGTH; False when it cannot tell.

    Serialized once by orjson: it holds no more containers than `{` and `[` bytes, so no deeper nesting;
    and with no escaped quote in it, every string is one run of bytes between two quotes, at least as
    many bytes as the string has characters. Anything orjson does not serialize as plain JSON (a str
    subclass, a non-string key, an integer beyond 64 bits, a lone surrogate) is left to the walk.
    """
    try:
        data = orjson.dumps(resource, option=orjson.OPT_PASSTHROUGH_SUBCLASS)
    except orjson.JSONEncodeError:
        return False
    if data.count(b"{") + data.count(b"[") > max_depth or b'\\"' in data:
        return False
    return len(data) <= MAX_TEXT_LENGTH or max(map(len, data.split(b'"'))) <= MAX_TEXT_LENGTH


def _scan_with_paths(resource: Any, max_depth: int) -> tuple[bool, list[str]]:
    """`scan_resource`, following the path of every value."""
    found: list[str] = []
    stack: list[tuple[Any, str, str, int, bool]] = [(resource, "", "", 0, True)]
    while stack:
        current, path, name, depth, read = stack.pop()
        if depth > max_depth:
            return True, []
        if isinstance(current, dict):
            for key, child in current.items():
                if isinstance(child, (dict, list)):
                    stack.append((child, f"{path}.{key}" if path else key, key, depth + 1,
                                  read and key not in _UNREAD_ELEMENTS))
                elif read and isinstance(child, str) and len(child) > MAX_TEXT_LENGTH and key not in _UNREAD_ELEMENTS:
                    child_path = f"{path}.{key}" if path else key
                    if key in _TEXT_ELEMENTS or (key == "code" and ".coding[" in child_path):
                        found.append(child_path)
        elif isinstance(current, list):
            for position, child in enumerate(current):
                if isinstance(child, (dict, list)):
                    stack.append((child, f"{path}[{position}]", name, depth + 1, read))
                elif read and isinstance(child, str) and len(child) > MAX_TEXT_LENGTH and name in _TEXT_ELEMENTS:
                    found.append(f"{path}[{position}]")
    return False, sorted(found)


def codings(codeable: Any) -> list[dict[str, Any]]:
    """The coding objects of a CodeableConcept (malformed items dropped)."""
    if not isinstance(codeable, dict):
        return []
    items = codeable.get("coding")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def concept(codeable: Any) -> Concept | None:
    """A CodeableConcept as a Concept; None when it has neither codings nor text."""
    codes = tuple(
        Code(code.strip()[:MAX_TEXT_LENGTH], text_or_none(item.get("system")), text_or_none(item.get("display")),
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
    """The `reference` string of a Reference element; None when absent or when the element is not an object."""
    return text_or_none(element.get("reference")) if isinstance(element, dict) else None


def categories_text(categories: Any) -> str | None:
    """Every text, code and display of a list of CodeableConcepts (Condition.category), lower case,
    separated by ' | ': the rules look for words such as "family history" in it."""
    if not isinstance(categories, list):
        return None
    parts: list[str] = []
    for codeable in categories:
        if not isinstance(codeable, dict):
            continue
        parts.extend(part for part in (text_or_none(codeable.get("text")),) if part)
        for item in codings(codeable):
            parts.extend(part for part in (text_or_none(item.get("code")), text_or_none(item.get("display"))) if part)
    return normalized_name(" | ".join(parts)) if parts else None

