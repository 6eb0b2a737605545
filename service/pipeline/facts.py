"""One patient's facts as the rule engine's data provider.

The engine calls `retrieve` once per retrieve expression and patient, with
every code of a value set, so records are indexed by type and by
(system, code) once, when the facts are built.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Iterable, Sequence

from ..assessment_model import InputIssue
from ..cql_like.values import Code, Concept, Record

# Among results filed at the same instant, the one that supersedes counts: a preliminary result is
# replaced by the final one, and a final one by its amendment or correction (the library's
# "Supersession Rank").
_STATUS_SUPERSEDES = {"preliminary": 0, "final": 1, "amended": 2, "corrected": 2}
# Among results equal on date, issued time and status, the more abnormal one counts (clinically
# conservative): critical flags, then other abnormal flags, then normal, then no flag.
_FLAG_WEIGHT = {"HH": 0, "LL": 0, "H": 1, "L": 1, "A": 1, "AA": 0, "N": 3}
_OTHER_FLAG_WEIGHT, _NO_FLAG_WEIGHT = 2, 4
# For these flags the lower value is the more abnormal one; for all others the higher one.
_LOW_FLAGS = frozenset({"L", "LL"})


def in_superseding_order(records: Sequence[Record]) -> tuple[Record, ...]:
    """`records` in bundle order, except that results of one analyte with the same `effective` are
    ordered so the one that counts comes first, whatever order the bundle sent them in.

    The library sorts by effective desc, issued desc, "Supersession Rank"(status) desc with a stable
    sort and takes First, so among results equal on all three the first in this order is used; the
    same order is the one a rule sorting by effective alone would get (see `counting_order_key`).
    Records with different dates or analytes keep their places.
    """
    positions: dict[tuple[object, object], list[int]] = defaultdict(list)
    for position, record in enumerate(records):
        effective, analyte = record.get("effective"), record.get("analyte")
        if effective is not None and analyte is not None:
            positions[(effective, analyte)].append(position)
    ordered = list(records)
    for same_instant in positions.values():
        if len(same_instant) < 2:
            continue
        tied = sorted((records[position] for position in same_instant), key=counting_order_key)
        for position, record in zip(same_instant, tied):
            ordered[position] = record
    return tuple(ordered)


def counting_order_key(record: Record) -> tuple:
    """Sort key (ascending) putting the result that counts first among results at the same instant:
    later issued (a result with an issued time before one without), then the superseding status, then
    the more abnormal flag, then the value farther out (lower for L/LL, else higher), then the source."""
    issued = record.get("issued")
    status = record.get("status")
    rank = _STATUS_SUPERSEDES.get(status, 1) if isinstance(status, str) else 1
    flag = record.get("interpretation")
    weight = (_FLAG_WEIGHT.get(flag, _OTHER_FLAG_WEIGHT) if isinstance(flag, str) else _NO_FLAG_WEIGHT)
    value = record.get("value")
    magnitude = getattr(value, "value", None)
    if magnitude is None:
        value_key: tuple = (1, 0)
    else:
        value_key = (0, magnitude if flag in _LOW_FLAGS else -magnitude)
    text = record.get("valueText")
    return (issued is None, -issued.timestamp() if isinstance(issued, datetime) else 0.0, -rank, weight,
            str(getattr(value, "unit", "")), value_key, str(text or ""), record.source or "")


def _distinct(codes: tuple[Code, ...]) -> Iterable[Code]:
    """Each (system, code) of `codes` once, as the first Code that has it: a Code equals another of the same
    system and code whatever its display, so the record's own Codes index it (none is built anew)."""
    if len(codes) < 2:
        return codes
    first: dict[tuple[str | None, str], Code] = {}
    for code in codes:
        first.setdefault((code.system, code.code), code)
    return first.values()


class PatientFacts:
    """Normalized records of one patient; implements the engine's DataProvider protocol."""

    def __init__(self, patient_id: str, patient_reference: str, patient_record: Record | None,
                 records: Iterable[Record], issues: Iterable[InputIssue] = ()) -> None:
        self.patient_id = patient_id
        self.patient_reference = patient_reference
        self.issues: tuple[InputIssue, ...] = tuple(issues)
        self._patient = patient_record
        by_type: dict[str, list[Record]] = defaultdict(list)
        for record in records:
            by_type[record.type_name].append(record)
        self._by_type: dict[str, tuple[Record, ...]] = {name: tuple(items) for name, items in by_type.items()}
        if "Observation" in self._by_type:
            self._by_type["Observation"] = in_superseding_order(self._by_type["Observation"])
        self._by_code: dict[tuple[str, str | None, str], list[int]] = defaultdict(list)
        # per type, every (coding, position): a value set larger than the patient's codings of the
        # type is matched by reading the codings, so a retrieve costs what the patient has, not the set
        self._codings: dict[str, list[tuple[Code, int]]] = defaultdict(list)
        for name, items in self._by_type.items():
            for position, record in enumerate(items):
                primary = record.get("code")
                if not isinstance(primary, Concept):
                    continue
                for code in _distinct(primary.codes):
                    self._by_code[(name, code.system, code.code)].append(position)
                    self._codings[name].append((code, position))

    def patient(self) -> Record | None:
        """The context Patient."""
        return self._patient

    def records(self, type_name: str) -> tuple[Record, ...]:
        """Every record of `type_name`, in bundle order (results at the same instant: the one that counts first)."""
        if type_name == "Patient":
            return (self._patient,) if self._patient is not None else ()
        return self._by_type.get(type_name, ())

    def retrieve(self, type_name: str, codes: frozenset[Code] | None = None) -> Sequence[Record]:
        """Records of `type_name`; with `codes`, those whose `code` has a coding equal (system + code) to one."""
        if codes is None:
            return self.records(type_name)
        records = self._by_type.get(type_name, ())
        if not records:
            return ()
        codings = self._codings.get(type_name, ())
        if len(codings) < len(codes):
            positions = {position for code, position in codings if code in codes}
        else:
            positions = set()
            for code in codes:
                positions.update(self._by_code.get((type_name, code.system, code.code), ()))
        return tuple(records[position] for position in sorted(positions))

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}: {len(items)}" for name, items in self._by_type.items())
        return f"PatientFacts({self.patient_reference!r}, {counts})"
