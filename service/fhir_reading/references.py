"""Resolution of FHIR references among the entries of one Bundle.

Entries point at each other by the target's `fullUrl` (usually `urn:uuid:...`
in transaction and collection bundles) or by a relative `Type/id`; a server's
searchset uses absolute fullUrls (`https://host/fhir/Patient/1`). The index
registers every spelling an entry can be reached by, so a reference resolves
whichever form the sender chose.

Two entries are the same resource only when their fullUrls are equal (bdl-7):
`Patient/1` from two servers are two patients. A spelling shared by several
entries is ambiguous and resolves to nothing, so a result is never attached
to the wrong patient; a relative reference is first read against the base of
the referring entry's own fullUrl, as the FHIR bundle rules say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, Iterable, TypeVar

T = TypeVar("T")

# `Type/id`, optionally followed by `/_history/version`, at the end of a reference or URL.
_RELATIVE_TAIL = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)
# The R4 `id` datatype.
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_RESTFUL_BASE = re.compile(r"^https?://\S+$")
# Whitespace (str.isspace's set: `\s` of a str pattern) or a control character (Unicode category Cc).
_NOT_IN_URI = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


_ID_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-."


def is_valid_id(value: object) -> bool:
    """True for a string that is a valid R4 `id` (1-64 of A-Z a-z 0-9 - .)."""
    if not isinstance(value, str):
        return False
    if 0 < len(value) <= 64 and not value.strip(_ID_CHARACTERS):
        return True  # nothing but id characters: what the pattern accepts, told without it
    return _FHIR_ID.match(value) is not None


def is_valid_uri(value: object) -> bool:
    """True for a non-empty string without whitespace or control characters (the R4 `uri` datatype)."""
    if not isinstance(value, str) or not value:
        return False
    if value.isprintable() and " " not in value:
        return True  # printable but for the space excludes every other whitespace and control character
    return _NOT_IN_URI.search(value) is None


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


def server_base(full_url: str | None) -> str | None:
    """`https://host/fhir/` for `https://host/fhir/Patient/1`; None when the fullUrl is no RESTful URL."""
    if not full_url or full_url.startswith("urn:") or _RESTFUL_BASE.match(full_url) is None:
        return None   # (a urn:uuid:, the usual fullUrl, answered without the pattern)
    match = _RELATIVE_TAIL.search(full_url)
    if match is None or match.start() == 0:
        return None
    return full_url[: match.start() + 1]


def reference_keys(resource_type: str | None, resource_id: str | None, full_url: str | None) -> list[str]:
    """Every key an entry can be referred to by: its fullUrl and its `Type/id`."""
    keys: list[str] = []
    if full_url:
        keys.append(full_url)
        tail = relative_reference(full_url)
        if tail is not None and f"{tail[0]}/{tail[1]}" != full_url:
            keys.append(f"{tail[0]}/{tail[1]}")
    if resource_type and is_valid_id(resource_id):
        named = f"{resource_type}/{resource_id}"
        if named not in keys:
            keys.append(named)
    return keys


def preferred_reference(resource_type: str | None, resource_id: str | None, full_url: str | None) -> str | None:
    """The reference the caller's own bundle uses for an entry.

    A `urn:uuid:`/`urn:oid:` fullUrl is how entries of transaction and
    collection bundles point at each other, so it wins; otherwise `Type/id`
    (a server's absolute fullUrl reduced to it), then the fullUrl as given.
    An id that is not a valid R4 id is never used: the result must be a valid
    Reference.reference.
    """
    if full_url and full_url.startswith("urn:"):
        return full_url
    if resource_type and is_valid_id(resource_id):
        return f"{resource_type}/{resource_id}"
    if full_url:
        tail = relative_reference(full_url)
        return f"{tail[0]}/{tail[1]}" if tail else full_url
    return None


@dataclass(frozen=True)
class Resolution(Generic[T]):
    """What a reference names: one target, several (ambiguous), or nothing in the bundle."""

    target: T | None
    candidates: tuple[T, ...] = ()  # all entries sharing the spelling, when ambiguous

    @property
    def ambiguous(self) -> bool:
        """True when several entries share the spelling, so no single target may be assumed."""
        return len(self.candidates) > 1


class ReferenceIndex(Generic[T]):
    """Maps reference spellings to targets; a spelling registered by two targets is ambiguous."""

    __slots__ = ("_targets", "_ambiguous")

    def __init__(self) -> None:
        self._targets: dict[str, T] = {}
        self._ambiguous: dict[str, list[T]] = {}

    def add(self, target: T, keys: Iterable[str]) -> list[str]:
        """Register `target` under `keys`; returns the keys that another target already had."""
        shared: list[str] = []
        for key in keys:
            if key not in self._targets:
                self._targets[key] = target
                continue
            if self._targets[key] == target:
                continue
            shared.append(key)
            holders = self._ambiguous.setdefault(key, [self._targets[key]])
            if target not in holders:
                holders.append(target)
        return shared

    def lookup(self, reference: str, base: str | None = None) -> Resolution[T]:
        """Resolve `reference`: against `base` (the referrer's server base) first when relative, then
        by the exact spelling, then by `Type/id` (absolute URLs reduced to it)."""
        if base is not None and not reference.startswith(("urn:", "#", "http://", "https://")):
            absolute = self._targets.get(base + reference)
            if absolute is not None and (base + reference) not in self._ambiguous:
                return Resolution(absolute)
        for key in self._keys_for(reference):
            if key in self._ambiguous:
                return Resolution(None, tuple(self._ambiguous[key]))
            found = self._targets.get(key)
            if found is not None:
                return Resolution(found)
        return Resolution(None)

    def is_ambiguous(self, key: str) -> bool:
        """True when `key` was registered by more than one target."""
        return key in self._ambiguous

    def resolve(self, reference: str, base: str | None = None) -> T | None:
        """The single target of `reference`; None when it names nothing or is ambiguous."""
        return self.lookup(reference, base).target

    @staticmethod
    def _keys_for(reference: str) -> list[str]:
        keys = [reference]
        tail = relative_reference(reference)
        if tail is not None:
            keys.append(f"{tail[0]}/{tail[1]}")
        return keys
