"""Which codes count as the same test (a result of PTH 14866-8 is a result of the PTH test 2731-8).

The grouping is the core's own: the value sets the rule library evaluates (VALUESET_DIR), read by
the engine's loader, so it sees the same expansion as the rules. Two codes are the same test when
the smallest value set holding each is the same one; a code in no value set only matches itself.
Code systems are compared without a trailing slash.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from ..pipeline.value_sets import ValueSet, read_value_sets

SHIPPED_VALUESET_DIR = Path(__file__).resolve().parents[1] / "knowledge" / "valuesets"


def normalize_system(system: str) -> str:
    """'http://loinc.org/' and ' http://loinc.org' are 'http://loinc.org'."""
    return system.strip().rstrip("/")


@lru_cache(maxsize=8)
def _value_sets(valueset_dir: str) -> tuple[ValueSet, ...]:
    """`read_value_sets`, once per folder and process (callers without an app)."""
    return read_value_sets(valueset_dir)


def _size(value_set: ValueSet) -> tuple[bool, int, str]:
    """Smaller first: a listed set before one reaching further through a filter, then fewer codes, then url."""
    return (value_set.has_filters, len(value_set.codes), value_set.url)


class LabTestGrouping:
    """Answers "is this the same test?" through the core's value sets, as the engine reads them.

    Two codes are the same test when the smallest value set holding each is the same one (the
    analyte's own: a code may also sit in a broader panel set, which must not make every member of
    the panel "the same test"); a code in no value set only matches itself.
    """

    def __init__(self, valueset_dir: str | Path = SHIPPED_VALUESET_DIR, *, reread: bool = False) -> None:
        """`reread`: read the folder now instead of reusing this process's earlier reading (an app's own)."""
        found = read_value_sets(valueset_dir) if reread else _value_sets(str(valueset_dir))
        self._value_sets = tuple(sorted(found, key=_size))
        self._keys: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def key(self, system: str, code: str) -> object:
        """The url of the smallest value set holding the code, or the code itself when no value set does."""
        exact = (normalize_system(system), code.strip())
        with self._lock:
            known = self._keys.get(exact)
        if known is not None:
            return known
        found: object = next((vs.url for vs in self._value_sets if vs.contains(*exact)), exact)
        with self._lock:
            self._keys[exact] = found
        return found

    def is_ordered(self, system: str, code: str, ordered: Iterable[tuple[str, str]]) -> bool:
        """True when one of `ordered` (system, code) pairs is the same test as (system, code)."""
        wanted = self.key(system, code)
        return any(self.key(s, c) == wanted for s, c in ordered)
