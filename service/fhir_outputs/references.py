"""Small helpers to write FHIR References the same way everywhere."""

from __future__ import annotations

import re
from typing import Any, Iterable

_RELATIVE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


BUNDLE_LOCATION_PREFIX = "Bundle.entry["


def reference(target: str, resource_type: str | None = None, display: str | None = None) -> dict[str, Any]:
    """A Reference to `target` used as is (``Patient/1``, ``urn:uuid:...``).

    `type` is added when the string itself does not name the resource type (urn:uuid or absolute
    URL) and the caller knows it, so receivers and our own target check can tell what it is.
    """
    if target.startswith(BUNDLE_LOCATION_PREFIX):
        # The caller sent this resource with neither id nor fullUrl: nothing can resolve a
        # reference to it, so say where it was instead of inventing an id.
        located: dict[str, Any] = {"display": f"{display + ', ' if display else ''}{target} (sent without id or fullUrl)"}
        if resource_type:
            located["type"] = resource_type
        return located
    value: dict[str, Any] = {"reference": target}
    if resource_type and not _RELATIVE.match(target):
        value["type"] = resource_type
    if display:
        value["display"] = display
    return value


def unique_sorted(references: Iterable[str]) -> list[str]:
    """Distinct non-empty references in sorted order, so outputs are deterministic."""
    return sorted({ref for ref in references if ref})
