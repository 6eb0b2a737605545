"""Structural checks shared by every Bundle a CDS client sends (prefetch values, draftOrders).

Each entry must hold a FHIR resource before the core sees it, so a malformed one is reported
with its location instead of being half-read.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..assessment_model import InputIssue


def request_issue(diagnostics: str, location: str, code: str = "invalid") -> InputIssue:
    """An error in the caller's request, at a FHIRPath-like location."""
    return InputIssue("error", code, diagnostics, location)


def readable_entries(bundle: Mapping[str, Any], where: str, issues: list[InputIssue],
                     noun: str = "Bundle entry") -> list[tuple[str, dict, dict]]:
    """The (location, entry, resource) of every entry holding a resource with a resourceType.

    Every other entry, and any id or fullUrl that is not a string, is reported in `issues`.
    """
    entries = bundle.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        issues.append(request_issue("Bundle.entry must be an array", f"{where}.entry"))
        return []
    readable = []
    for index, entry in enumerate(entries):
        location = f"{where}.entry[{index}]"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            issues.append(request_issue(f"each {noun} needs a resource (a JSON object)", f"{location}.resource"))
            continue
        if not isinstance(resource.get("resourceType"), str) or not resource["resourceType"]:
            issues.append(request_issue(f"the {noun} has no resourceType string",
                                        f"{location}.resource.resourceType", "required"))
            continue
        if resource.get("id") is not None and not isinstance(resource["id"], str):
            issues.append(request_issue("id must be a string", f"{location}.resource.id"))
        if entry.get("fullUrl") is not None and not isinstance(entry["fullUrl"], str):
            issues.append(request_issue("fullUrl must be a string", f"{location}.fullUrl"))
        readable.append((location, entry, resource))
    return readable
