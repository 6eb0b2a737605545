"""Value sets: FHIR ValueSet definitions resolved by canonical url and expanded when a library is compiled.

A value set file is a definition, as FHIR's `ValueSet.compose` writes one: `include` entries list codes
(`concept`) or select them by a filter, and `exclude` entries take codes out again. Real records carry
the most specific code of a hierarchy (a burn of the forearm is ICD-10-CM T22.211A, not T30.0), so a
definition says "T20-T32 and everything below" instead of listing leaves that would never be complete.

Supported filters (anything else is refused when the library is compiled, naming the file):

* `{"property": "concept", "op": "is-a", "value": "T22"}` on ICD-10-CM: the code and every code below it.
  ICD-10-CM's hierarchy is its code: each character after the category is one level down, so T22.211A
  is below T22.2, T22 and nothing else. Codes compare without their dot and in upper case.
* the same with a block of three-character categories as the value, `"T20-T32"` (written as the
  tabular writes its blocks): every category from the first to the last, and every code below them.

SNOMED CT has no hierarchy available offline: a definition lists a concept and its descendants as
`concept` entries. A plain `expansion.contains` list (the form of a fixed code list) is read too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import CqlValueSetError
from .values import Code

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"

# Code systems whose is-a hierarchy the expander can answer without a terminology server.
HIERARCHIES = {ICD10CM: "ICD-10-CM"}

# Codes whose membership one value set remembers (distinct codes seen, across all evaluations).
MEMBERSHIP_CACHE_SIZE = 50_000

_ICD_CODE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")
_ICD_BLOCK = re.compile(r"^([A-Z][0-9][0-9A-Z])-([A-Z][0-9][0-9A-Z])$")


def _icd_key(code: str) -> str:
    """T22.211A, t22211a and ' T22.211A ' are all 'T22211A': how is-a compares ICD-10-CM codes."""
    return code.strip().upper().replace(".", "")


@dataclass(frozen=True)
class CodeSelection:
    """What one side of a definition (its includes, or its excludes) selects."""

    codes: frozenset[Code] = frozenset()
    # (system, undotted upper-case code): that code and every code below it
    prefixes: frozenset[tuple[str, str]] = frozenset()
    # (system, first category, last category): every three-character category between, inclusive
    blocks: frozenset[tuple[str, str, str]] = frozenset()

    def has(self, system: str | None, code: str | None) -> bool:
        """Is (system, code) selected: listed exactly, or below a filter's code or block."""
        if code is None:
            return False
        if Code(code, system) in self.codes:
            return True
        if not (self.prefixes or self.blocks) or system not in HIERARCHIES:
            return False
        key = _icd_key(code)
        for prefix_system, prefix in self.prefixes:
            if prefix_system == system and key.startswith(prefix):
                return True
        category = key[:3]
        return len(category) == 3 and any(block_system == system and first <= category <= last
                                          for block_system, first, last in self.blocks)


@dataclass(frozen=True)
class ValueSet:
    """An expanded value set: membership is system + code, through the definition's lists and filters.

    `codes` is the explicit part (listed concepts not excluded): a data provider can look those up
    exactly. When `has_filters` is true, members also include codes below a filter's code or block,
    so an exact lookup of `codes` alone is not enough.
    """

    url: str
    codes: frozenset[Code]
    include: CodeSelection = CodeSelection()
    exclude: CodeSelection = CodeSelection()
    # (system, code) -> member, decided once per code and kept as long as the value set (which is
    # loaded with the library that uses it); bounded, so codes sent by callers cannot grow it forever.
    _members: dict[tuple[str | None, str], bool] = field(default_factory=dict, init=False, repr=False,
                                                          compare=False, hash=False)

    @property
    def has_filters(self) -> bool:
        """True when membership reaches beyond the listed codes (an is-a filter)."""
        return bool(self.include.prefixes or self.include.blocks)

    def contains(self, system: str | None, code: str | None) -> bool:
        """Is the code (of that system) a member."""
        if code is None:
            return False
        key = (system, code)
        member = self._members.get(key)
        if member is None:
            member = Code(code, system) in self.codes or (
                self.has_filters and self.include.has(system, code) and not self.exclude.has(system, code))
            if len(self._members) < MEMBERSHIP_CACHE_SIZE:
                self._members[key] = member
        return member

    def contains_code_text(self, code: str) -> bool:
        """A bare code string (no system) is a member when some system's code of that text is."""
        return any(c.code == code for c in self.codes) or any(
            self.contains(system, code) for system in {s for s, _ in self.include.prefixes}
            | {s for s, _, _ in self.include.blocks})

    def __contains__(self, code: object) -> bool:
        return isinstance(code, Code) and self.contains(code.system, code.code)


# ---- reading a definition --------------------------------------------------------------------

def _fail(source: str, message: str) -> CqlValueSetError:
    return CqlValueSetError(message, filename=source)


def _filter_selection(system: str, item: Any, source: str, where: str) -> tuple[set, set]:
    """The prefixes and blocks one filter entry selects; refuses what the expander cannot honour."""
    if not isinstance(item, Mapping):
        raise _fail(source, f"{where}: a filter must be an object with property, op and value")
    prop, op, value = item.get("property"), item.get("op"), item.get("value")
    if op != "is-a":
        raise _fail(source, f"{where}: filter op {op!r} is not supported (supported: 'is-a', the code and every "
                            "code below it)")
    if prop != "concept":
        raise _fail(source, f"{where}: filter property {prop!r} is not supported (an is-a filter is on 'concept')")
    if system not in HIERARCHIES:
        raise _fail(source, f"{where}: no hierarchy of {system} is available offline, so is-a cannot be expanded; "
                            "list the concept and its descendants as concept entries")
    if not isinstance(value, str):
        raise _fail(source, f"{where}: an is-a filter needs a code as its value")
    text = value.strip().upper()
    block = _ICD_BLOCK.match(text)
    if block:
        first, last = block.groups()
        if first > last:
            raise _fail(source, f"{where}: block {value!r} ends before it starts")
        return set(), {(system, first, last)}
    if _ICD_CODE.match(text):
        return {(system, _icd_key(text))}, set()
    raise _fail(source, f"{where}: {value!r} is neither an ICD-10-CM code (T22, M35.0) nor a block of "
                        "categories (T20-T32)")


def _selection(entries: Any, source: str, side: str) -> CodeSelection:
    """Codes, prefixes and blocks of the compose `include` (or `exclude`) entries."""
    if entries is None:
        return CodeSelection()
    if not isinstance(entries, list):
        raise _fail(source, f"compose.{side} must be a list")
    codes: set[Code] = set()
    prefixes: set[tuple[str, str]] = set()
    blocks: set[tuple[str, str, str]] = set()
    for position, entry in enumerate(entries):
        where = f"compose.{side}[{position}]"
        if not isinstance(entry, Mapping):
            raise _fail(source, f"{where} must be an object")
        if entry.get("valueSet"):
            raise _fail(source, f"{where}: including another valueSet is not supported; list its codes or filters")
        system = entry.get("system")
        if not isinstance(system, str) or not system:
            raise _fail(source, f"{where} needs a system")
        concepts, filters = entry.get("concept"), entry.get("filter")
        if concepts and filters:
            raise _fail(source, f"{where} has both concept and filter (FHIR allows one or the other): "
                                "write them as two entries")
        if not concepts and not filters:
            raise _fail(source, f"{where} names neither concepts nor a filter, which would mean the whole code "
                                f"system {system}")
        if concepts:
            if not isinstance(concepts, list):
                raise _fail(source, f"{where}.concept must be a list")
            for concept in concepts:
                code = concept.get("code") if isinstance(concept, Mapping) else None
                if not isinstance(code, str) or not code.strip():
                    raise _fail(source, f"{where}.concept has an entry without a code")
                codes.add(Code(code.strip(), system, concept.get("display")))
        else:
            if not isinstance(filters, list):
                raise _fail(source, f"{where}.filter must be a list")
            if len(filters) != 1:
                raise _fail(source, f"{where}: write one filter per include (several filters in one include must "
                                    "all hold at once, which is rarely what is meant)")
            found_prefixes, found_blocks = _filter_selection(system, filters[0], source, f"{where}.filter[0]")
            prefixes |= found_prefixes
            blocks |= found_blocks
    return CodeSelection(frozenset(codes), frozenset(prefixes), frozenset(blocks))


def valueset_from_resource(resource: Mapping[str, Any], *, source: str) -> ValueSet:
    """Expand one ValueSet resource (its compose definition and any expansion.contains list).

    Raises CqlValueSetError naming `source` when the definition cannot be honoured or selects no code.
    """
    url = resource.get("url")
    if not isinstance(url, str) or not url:
        raise _fail(source, "the ValueSet has no url")
    compose = resource.get("compose") or {}
    if not isinstance(compose, Mapping):
        raise _fail(source, "compose must be an object")
    include = _selection(compose.get("include"), source, "include")
    exclude = _selection(compose.get("exclude"), source, "exclude")
    listed = set(include.codes)
    expansion = resource.get("expansion") or {}
    for entry in (expansion.get("contains") or []) if isinstance(expansion, Mapping) else []:
        if isinstance(entry, Mapping) and isinstance(entry.get("code"), str) and entry["code"].strip():
            listed.add(Code(entry["code"].strip(), entry.get("system"), entry.get("display")))
    if not listed and not include.prefixes and not include.blocks:
        raise _fail(source, "the ValueSet selects no codes (an empty value set would silently match nothing)")
    kept = frozenset(c for c in listed if not exclude.has(c.system, c.code))
    return ValueSet(url, kept, include, exclude)


def load_valueset_dir(directory: str | Path) -> dict[str, ValueSet]:
    """Every ValueSet JSON file in a directory, by url, expanded (files of other resource types and files
    that are not JSON are skipped; a ValueSet whose definition cannot be expanded raises CqlValueSetError)."""
    found: dict[str, ValueSet] = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            resource = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(resource, dict) and resource.get("resourceType") == "ValueSet" and resource.get("url"):
            found[resource["url"]] = valueset_from_resource(resource, source=str(path))
    return found


def from_mapping(valuesets: Mapping[str, Iterable]) -> dict[str, ValueSet]:
    """Test helper input: url -> iterable of Code or (system, code) pairs."""
    out = {}
    for url, codes in valuesets.items():
        items = frozenset(c if isinstance(c, Code) else Code(c[1], c[0]) for c in codes)
        out[url] = ValueSet(url, items, CodeSelection(items))
    return out
