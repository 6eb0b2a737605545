"""Resolution of FHIR references among the entries of one Bundle.

Entries point at each other by the target's `fullUrl` (usually `urn:uuid:...`
in transaction and collection bundles) or by a relative `Type/id`; a server's
searchset uses absolute fullUrls (`https://host/fhir/Patient/1`). The index
registers every spelling an entry can be reached by, so a reference resolves
whichever form the sender chose.
"""

from __future__ import annotations

import re
from typing import Generic, Iterable, TypeVar

T = TypeVar("T")

# `Type/id`, optionally followed by `/_history/version`, at the end of a reference or URL.
_RELATIVE_TAIL = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)


def relative_reference(reference: str) -> tuple[str, str] | None:
    """`(type, id)` named by a relative or absolute RESTful reference, else None.

    None for `urn:` and contained (`#x`) references, and for conditional
    references (`Patient?identifier=...`), which only a server can resolve.
    """
    if reference.startswith(("urn:", "#")) or "?" in reference:
        return None
    match = _RELATIVE_TAIL.search(reference)
    if match is None:
        return None
    return match.group("type"), match.group("id")


def reference_keys(resource_type: str | None, resource_id: str | None, full_url: str | None) -> list[str]:
    """Every key an entry can be referred to by: its fullUrl and its `Type/id`."""
    keys: list[str] = []
    if full_url:
        keys.append(full_url)
        tail = relative_reference(full_url)
        if tail is not None:
            keys.append(f"{tail[0]}/{tail[1]}")
    if resource_type and resource_id:
        keys.append(f"{resource_type}/{resource_id}")
    return keys


def preferred_reference(resource_type: str | None, resource_id: str | None, full_url: str | None) -> str | None:
    """The reference the caller's own bundle uses for an entry.

    A `urn:uuid:`/`urn:oid:` fullUrl is how entries of transaction and
    collection bundles point at each other, so it wins; otherwise `Type/id`
    (a server's absolute fullUrl reduced to it), then the fullUrl as given.
    """
    if full_url and full_url.startswith("urn:"):
        return full_url
    if resource_type and resource_id:
        return f"{resource_type}/{resource_id}"
    if full_url:
        tail = relative_reference(full_url)
        return f"{tail[0]}/{tail[1]}" if tail else full_url
    return None


class ReferenceIndex(Generic[T]):
    """Maps reference spellings to targets; the first entry registered under a key keeps it."""

    __slots__ = ("_targets",)

    def __init__(self) -> None:
        self._targets: dict[str, T] = {}

    def add(self, target: T, keys: Iterable[str]) -> list[str]:
        """Register `target` under `keys`; returns the keys already taken by another target."""
        taken: list[str] = []
        for key in keys:
            if key in self._targets:
                if self._targets[key] != target:
                    taken.append(key)
                continue
            self._targets[key] = target
        return taken

    def taken(self, keys: Iterable[str]) -> tuple[str, T] | None:
        """The first of `keys` already registered, with its target; None if all are free."""
        for key in keys:
            if key in self._targets:
                return key, self._targets[key]
        return None

    def resolve(self, reference: str) -> T | None:
        """The target of `reference` (exact fullUrl or `Type/id`, absolute URLs reduced to `Type/id`)."""
        found = self._targets.get(reference)
        if found is not None:
            return found
        tail = relative_reference(reference)
        if tail is None:
            return None
        return self._targets.get(f"{tail[0]}/{tail[1]}")
