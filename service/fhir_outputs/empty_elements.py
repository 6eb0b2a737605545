"""Leave out the elements R4 cannot hold empty, so a blank text never makes an output invalid.

R4 forbids empty objects and arrays, and a `string` must hold at least one character other than
whitespace (space, tab and line breaks count as content; other whitespace alone does not). A text
the caller sent, or one the rule library left blank, may be either, so every output resource goes
through `without_empty_elements` as the last step of building it: the element is left out rather
than written invalid.
"""

from __future__ import annotations

import re
from typing import Any

# What fhir.resources.R4B requires of a FHIR string: at least one character of this class.
_STRING_CONTENT = re.compile(r"[ \r\n\t\S]")


def without_empty_elements(value: Any) -> Any:
    """`value` with empty strings, objects and arrays left out, depth first (None stands for "leave out").

    Always a copy of the objects and arrays. Scalars are tested in the loops that hold them, and a
    string whose first character already counts as content skips the regular expression: a result
    Bundle holds thousands of elements, nearly all of them plainly non-empty.
    """
    cls = value.__class__
    if cls is str:
        return value if _has_content(value) else None
    if cls is dict:
        kept = {}
        for key, item in value.items():
            kind = item.__class__
            if kind is str:
                if _has_content(item):
                    kept[key] = item
            elif kind is dict or kind is list:
                item = without_empty_elements(item)
                if item is not None:
                    kept[key] = item
            elif kind in _PLAIN:
                kept[key] = item
            elif item is not None:
                item = without_empty_elements(item)
                if item is not None:
                    kept[key] = item
        return kept or None
    if cls is list:
        items = [item for item in map(without_empty_elements, value) if item is not None]
        return items or None
    if isinstance(value, (str, dict, list)):  # a subclass: the general case
        return _without_empty_subclass(value)
    return value


_PLAIN = frozenset({int, float, bool})
_CONTENT_FIRST = frozenset(" \r\n\t")


def _has_content(text: str) -> bool:
    """True when `text` holds a character R4 counts as string content."""
    if text and (text[0] in _CONTENT_FIRST or not text[0].isspace()):
        return True
    return _STRING_CONTENT.search(text) is not None


def _without_empty_subclass(value: Any) -> Any:
    if isinstance(value, str):
        return value if _has_content(value) else None
    if isinstance(value, dict):
        kept = {key: item for key, item in ((key, without_empty_elements(item)) for key, item in value.items())
                if item is not None}
        return kept or None
    items = [item for item in map(without_empty_elements, value) if item is not None]
    return items or None
