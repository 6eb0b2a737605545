"""One patient's facts as the rule engine's data provider.

The engine calls `retrieve` once per retrieve expression and patient, with
every code of a value set, so records are indexed by type and by
(system, code) once, when the facts are built.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Iterable, Sequence

from .assessment_model import InputIssue
from .cql_like.values import Code, Concept, Record

# Among results filed at the same instant, the one that supersedes comes later: a preliminary result is
# replaced by the final one, and a final one by its amendment or correction.
_STATUS_SUPERSEDES = {"preliminary": 0, "final": 1, "amended": 2, "corrected": 2}


def in_superseding_order(records: Sequence[Record]) -> tuple[Record, ...]:
    """`records` in bundle order, except that results with the same `effective` are ordered so the one
    that supersedes comes last (later `issued`, then amended/corrected after final after preliminary),
    whatever order the bundle sent them in.

    This is the tie-break for a rule that sorts by effective alone (the shipped library also sorts on
    issued and status itself); records with different dates keep their places.
    """
    positions: dict[object, list[int]] = defaultdict(list)
    for position, record in enumerate(records):
        effective = record.get("effective")
        if effective is not None:
            positions[effective].append(position)
    ordered = list(records)
    for same_instant in positions.values():
        if len(same_instant) < 2:
            continue
        tied = sorted((records[position] for position in same_instant), key=_supersession_key)
        for position, record in zip(same_instant, tied):
            ordered[position] = record
    return tuple(ordered)


def _supersession_key(record: Record) -> tuple[float, int]:
    issued = record.get("issued")
    status = record.get("status")
    rank = _STATUS_SUPERSEDES.get(status, 1) if isinstance(status, str) else 1
    return issued.timestamp() if isinstance(issued, datetime) else float("-inf"), rank


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
        for name, items in self._by_type.items():
            for position, record in enumerate(items):
                primary = record.get("code")
                if not isinstance(primary, Concept):
                    continue
                for code in dict.fromkeys((c.system, c.code) for c in primary.codes):
                    self._by_code[(name, code[0], code[1])].append(position)

    def patient(self) -> Record | None:
        """The context Patient."""
        return self._patient

    def records(self, type_name: str) -> tuple[Record, ...]:
        """Every record of `type_name`, in bundle order (results at the same instant: superseding one last)."""
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
        positions: set[int] = set()
        for code in codes:
            positions.update(self._by_code.get((type_name, code.system, code.code), ()))
        return tuple(records[position] for position in sorted(positions))

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}: {len(items)}" for name, items in self._by_type.items())
        return f"PatientFacts({self.patient_reference!r}, {counts})"
