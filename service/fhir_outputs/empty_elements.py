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
    """`value` with empty strings, objects and arrays left out, depth first (None stands for "leave out")."""
    if isinstance(value, str):
        return value if _STRING_CONTENT.search(value) else None
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            item = without_empty_elements(item)
            if item is not None:
                kept[key] = item
        return kept or None
    if isinstance(value, list):
        items = [item for item in map(without_empty_elements, value) if item is not None]
        return items or None
    return value
