"""Value sets: FHIR ValueSet JSON files resolved by canonical url at compile time."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from .values import Code


@dataclass(frozen=True)
class ValueSet:
    """An expanded value set; membership is system + code."""

    url: str
    codes: frozenset[Code]

    def __contains__(self, code: object) -> bool:
        return code in self.codes


def _codes_from_resource(resource: Mapping) -> list[Code]:
    codes: list[Code] = []
    for entry in (resource.get("expansion") or {}).get("contains", []) or []:
        if entry.get("code"):
            codes.append(Code(entry["code"], entry.get("system"), entry.get("display")))
    for include in (resource.get("compose") or {}).get("include", []) or []:
        system = include.get("system")
        for concept in include.get("concept", []) or []:
            if concept.get("code"):
                codes.append(Code(concept["code"], system, concept.get("display")))
    return codes


def load_valueset_dir(directory: str | Path) -> dict[str, ValueSet]:
    """Every ValueSet JSON file in a directory, by url (files of other resource types are skipped)."""
    found: dict[str, ValueSet] = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            resource = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(resource, dict) and resource.get("resourceType") == "ValueSet" and resource.get("url"):
            found[resource["url"]] = ValueSet(resource["url"], frozenset(_codes_from_resource(resource)))
    return found


def from_mapping(valuesets: Mapping[str, Iterable]) -> dict[str, ValueSet]:
    """Test helper input: url -> iterable of Code or (system, code) pairs."""
    out = {}
    for url, codes in valuesets.items():
        items = frozenset(c if isinstance(c, Code) else Code(c[1], c[0]) for c in codes)
        out[url] = ValueSet(url, items)
    return out
