"""Which tests count as the same test, so a draft order under another code of an analyte is not proposed again.

The grouping is the core's own: the value sets the rule library evaluates (VALUESET_DIR). Two codes
are the same test when the smallest value set holding each is the same one (e.g. PTH 2731-8 and
14866-8); a code in no value set only matches itself. Code systems are compared without a
trailing slash.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

SHIPPED_VALUESET_DIR = Path(__file__).resolve().parents[1] / "knowledge" / "valuesets"


def normalize_system(system: str) -> str:
    """'http://loinc.org/' and ' http://loinc.org' are 'http://loinc.org'."""
    return system.strip().rstrip("/")


def _expansion_codes(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """The listed codes of a value set file: `expansion.contains` and the concepts of `compose.include`
    (lab tests are listed code by code; a filter selects no lab test)."""
    expansion = resource.get("expansion")
    contains = expansion.get("contains") if isinstance(expansion, dict) else None
    codes = []
    for item in contains if isinstance(contains, list) else ():
        if isinstance(item, dict) and isinstance(item.get("system"), str) and isinstance(item.get("code"), str):
            codes.append((normalize_system(item["system"]), item["code"]))
    compose = resource.get("compose")
    includes = compose.get("include") if isinstance(compose, dict) else None
    for include in includes if isinstance(includes, list) else ():
        system = include.get("system") if isinstance(include, dict) else None
        concepts = include.get("concept") if isinstance(include, dict) else None
        for item in concepts if isinstance(system, str) and isinstance(concepts, list) else ():
            if isinstance(item, dict) and isinstance(item.get("code"), str):
                codes.append((normalize_system(system), item["code"]))
    return codes


def _read_groups(valueset_dir: str) -> dict[tuple[str, str], str]:
    """(system, code) -> url of the smallest expanded ValueSet in the folder that holds it.

    The smallest set is the analyte's own (a code may also sit in a broader panel set, which must
    not make every member of the panel "the same test").
    """
    holders: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for path in sorted(Path(valueset_dir).glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(resource, dict) or resource.get("resourceType") != "ValueSet":
            continue
        codes = _expansion_codes(resource)
        url = str(resource.get("url") or path.stem)
        for key in codes:
            holders.setdefault(key, []).append((len(set(codes)), url))
    return {key: min(found)[1] for key, found in holders.items()}


@lru_cache(maxsize=8)
def _group_by_code(valueset_dir: str) -> dict[tuple[str, str], str]:
    """`_read_groups`, read once per folder and process (callers without an app)."""
    return _read_groups(valueset_dir)


class LabTestGrouping:
    """Answers "is this test already ordered?" through the core's value sets."""

    def __init__(self, valueset_dir: str | Path = SHIPPED_VALUESET_DIR, *, reread: bool = False) -> None:
        """`reread`: read the folder now instead of reusing this process's earlier reading (an app's own)."""
        self._groups = _read_groups(str(valueset_dir)) if reread else _group_by_code(str(valueset_dir))

    def key(self, system: str, code: str) -> object:
        """The analyte's value set holding the code, or the code itself when no value set does."""
        exact = (normalize_system(system), code.strip())
        return self._groups.get(exact, exact)

    def is_ordered(self, system: str, code: str, ordered: Iterable[tuple[str, str]]) -> bool:
        """True when one of `ordered` (system, code) pairs is the same test as (system, code)."""
        wanted = self.key(system, code)
        return any(self.key(s, c) == wanted for s, c in ordered)
