"""Structural checks shared by every Bundle a CDS client sends (prefetch values, draftOrders).

Each entry must hold a FHIR resource before the core sees it, so a malformed one is reported
with its location instead of being half-read.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from ..assessment_model import InputIssue


def request_issue(diagnostics: str, location: str, code: str = "invalid") -> InputIssue:
    """An error in the caller's request, at a FHIRPath-like location."""
    return InputIssue("error", code, diagnostics, location)


def readable_entries(bundle: Mapping[str, Any], where: str, issues: list[InputIssue],
                     noun: str = "Bundle entry") -> list[tuple[str, dict, dict]]:
    """The (location, entry, resource) of every entry holding a resource with a resourceType.

    Every other entry, and any id or fullUrl that is not a string, is reported in `issues`.
    """
    return [(f"{where}.entry[{index}]", entry, resource)
            for index, entry, resource in _readable(bundle, where, issues, noun)]


def check_entries(bundle: Mapping[str, Any], where: str, issues: list[InputIssue],
                  noun: str = "Bundle entry") -> None:
    """The checks of `readable_entries`, reported in `issues`, without listing the readable entries
    (a prefetched search can hold tens of thousands: no location is written for a sound one)."""
    for _ in _readable(bundle, where, issues, noun):
        pass


def _readable(bundle: Mapping[str, Any], where: str, issues: list[InputIssue],
              noun: str) -> Iterator[tuple[int, dict, dict]]:
    entries = bundle.get("entry")
    if entries is None:
        return
    if not isinstance(entries, list):
        issues.append(request_issue("Bundle.entry must be an array", f"{where}.entry"))
        return
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            issues.append(request_issue(f"each {noun} needs a resource (a JSON object)",
                                        f"{where}.entry[{index}].resource"))
            continue
        if not isinstance(resource.get("resourceType"), str) or not resource["resourceType"]:
            issues.append(request_issue(f"the {noun} has no resourceType string",
                                        f"{where}.entry[{index}].resource.resourceType", "required"))
            continue
        if resource.get("id") is not None and not isinstance(resource["id"], str):
            issues.append(request_issue("id must be a string", f"{where}.entry[{index}].resource.id"))
        if entry.get("fullUrl") is not None and not isinstance(entry["fullUrl"], str):
            issues.append(request_issue("fullUrl must be a string", f"{where}.entry[{index}].fullUrl"))
        yield index, entry, resource
