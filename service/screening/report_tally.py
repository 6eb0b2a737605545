"""What the screening report counts, read in one pass over the summary rows.

The rows may be many (a health system's export): only counts and the highest-graded patients
are kept, never the rows themselves, so the report of 10,000 patients costs what the report of
50 does. Rows come from the engines' summary (`summary_row`) and, read back, from CSV or
Parquet: a value may be None, NaN, a numeric string or a list given as text, and is read as what
it says or as unknown, never as zero. Unknown is kept apart from normal throughout: a patient
with no Ca x P is counted as such, not in the lowest bin.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..assessment_model import CALCINOSIS_TYPES, RISK_ORDER

CHARTS_FILE = Path(__file__).resolve().parent / "report_charts.json"
# rows held before the candidates for the top of the table are cut back to the table's length
_TOP_BATCH = 2000


@lru_cache(maxsize=1)
def report_data() -> dict[str, Any]:
    """report_charts.json, read once: the threshold and its citation, the bins, the grades, the specs."""
    return json.loads(CHARTS_FILE.read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True)
class Bin:
    """One bar of the Ca x P histogram: [start, end), the last bin open (end None)."""

    start: float
    end: float | None
    patients: int

    @property
    def label(self) -> str:
        return f"{_number(self.start)} and above" if self.end is None else f"{_number(self.start)} to {_number(self.end)}"


@dataclass(frozen=True, slots=True)
class PatientLine:
    """A row of the top table, its values read and checked."""

    patient_id: str
    top_type: str | None
    top_grade: str | None
    calcium: float | None
    calcium_date: str | None
    phosphate: float | None
    phosphate_date: str | None
    ca_x_p: float | None
    ca_x_p_date: str | None
    egfr: float | None
    egfr_date: str | None
    missing_tests: tuple[str, ...]
    data_problems: int


@dataclass(slots=True)
class ReportTally:
    """The counts of the report and its top patients."""

    threshold: float
    bin_width: float
    upper: float
    top_size: int
    patients: int = 0
    by_type_grade: Counter = field(default_factory=Counter)  # (type or None, grade or None) -> patients
    ca_x_p_values: int = 0
    at_or_above: int = 0
    above: int = 0
    bins: list[int] = field(default_factory=list)
    no_ca_x_p: int = 0
    no_calcium_only: int = 0
    no_phosphate_only: int = 0
    no_calcium_nor_phosphate: int = 0
    both_known_no_product: int = 0
    with_data_problems: int = 0
    data_problems: int = 0
    with_gaps: int = 0
    gaps: Counter = field(default_factory=Counter)  # test -> patients still needing it
    gaps_at_or_above: Counter = field(default_factory=Counter)  # test -> of them, Ca x P at or above the threshold
    _top: list[PatientLine] = field(default_factory=list)

    def add(self, row: Mapping[str, Any]) -> None:
        """Count one summary row."""
        line = read_row(row)
        self.patients += 1
        self.by_type_grade[(line.top_type, line.top_grade)] += 1
        product = line.ca_x_p
        if product is None:
            self.no_ca_x_p += 1
            if line.calcium is None and line.phosphate is None:
                self.no_calcium_nor_phosphate += 1
            elif line.calcium is None:
                self.no_calcium_only += 1
            elif line.phosphate is None:
                self.no_phosphate_only += 1
            else:
                self.both_known_no_product += 1
        else:
            self.ca_x_p_values += 1
            self.bins[self._bin_of(product)] += 1
            self.at_or_above += product >= self.threshold
            self.above += product > self.threshold
        if line.data_problems:
            self.with_data_problems += 1
            self.data_problems += line.data_problems
        if line.missing_tests:
            self.with_gaps += 1
            self.gaps.update(line.missing_tests)
            if product is not None and product >= self.threshold:
                self.gaps_at_or_above.update(line.missing_tests)
        self._top.append(line)
        if len(self._top) >= _TOP_BATCH:
            self._top = sorted(self._top, key=top_order)[:self.top_size]

    def _bin_of(self, product: float) -> int:
        if product >= self.upper:
            return len(self.bins) - 1
        return max(0, int(product // self.bin_width))

    def histogram(self) -> list[Bin]:
        """The bins in order, the last one open."""
        edges = [index * self.bin_width for index in range(len(self.bins))]
        return [Bin(start, start + self.bin_width if index < len(self.bins) - 1 else None, count)
                for index, (start, count) in enumerate(zip(edges, self.bins))]

    def top(self) -> list[PatientLine]:
        """The highest-graded patients: grade (RISK_ORDER), then Ca x P (unknown last), then id."""
        return sorted(self._top, key=top_order)[:self.top_size]

    def grade_columns(self) -> list[str | None]:
        """The grades in RISK_ORDER, then any other grade met, then None (not graded) when met."""
        seen = {grade for _, grade in self.by_type_grade}
        known = sorted(RISK_ORDER, key=RISK_ORDER.__getitem__, reverse=True)
        others = sorted(grade for grade in seen if grade is not None and grade not in RISK_ORDER)
        return known + others + ([None] if None in seen else [])

    def type_rows(self) -> list[str | None]:
        """The five types in the library's order, then any other type met, then None (no type) when met."""
        seen = {kind for kind, _ in self.by_type_grade}
        others = sorted(kind for kind in seen if kind is not None and kind not in CALCINOSIS_TYPES)
        return list(CALCINOSIS_TYPES) + others + ([None] if None in seen else [])

    def gap_rows(self) -> list[tuple[str, int, int]]:
        """(test, patients still needing it, of them at or above the threshold), most needed first."""
        return [(test, count, self.gaps_at_or_above[test])
                for test, count in sorted(self.gaps.items(), key=lambda item: (-item[1], item[0]))]


def tally(rows: Iterable[Mapping[str, Any]]) -> ReportTally:
    """Count `rows` (one pass; the rows are not kept)."""
    counts = new_tally()
    for row in rows:
        counts.add(row)
    return counts


def new_tally() -> ReportTally:
    """A tally of no row yet, to `add` rows to one at a time as they come (an engine joining its parts)."""
    data = report_data()
    histogram = data["histogram"]
    width, upper = float(histogram["bin_width"]), float(histogram["upper"])
    counts = ReportTally(threshold=float(data["ca_x_p_threshold"]["value"]), bin_width=width, upper=upper,
                         top_size=int(data["top_patients"]))
    counts.bins = [0] * (int(math.ceil(upper / width)) + 1)
    return counts


def top_order(line: PatientLine) -> tuple[int, bool, float, str]:
    """Sort key: highest grade first (unknown grades last), then the highest Ca x P (unknown last), then id."""
    grade = RISK_ORDER.get(line.top_grade, -1) if line.top_grade is not None else -1
    return (-grade, line.ca_x_p is None, -(line.ca_x_p or 0.0), line.patient_id)


def read_row(row: Mapping[str, Any]) -> PatientLine:
    """A summary row read defensively: what cannot be read is unknown (None), never zero."""
    return PatientLine(
        patient_id=_text(row.get("patient_id")) or "",
        top_type=_text(row.get("top_type")),
        top_grade=_text(row.get("top_grade")),
        calcium=_number_or_none(row.get("calcium")),
        calcium_date=_text(row.get("calcium_date")),
        phosphate=_number_or_none(row.get("phosphate")),
        phosphate_date=_text(row.get("phosphate_date")),
        ca_x_p=_number_or_none(row.get("ca_x_p")),
        ca_x_p_date=_text(row.get("ca_x_p_date")),
        egfr=_number_or_none(row.get("egfr")),
        egfr_date=_text(row.get("egfr_date")),
        missing_tests=_tests(row.get("missing_tests")),
        data_problems=_count(row.get("data_problems")),
    )


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _number_or_none(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _count(value: Any) -> int:
    number = _number_or_none(value)
    return int(number) if number is not None and number > 0 else 0


def _tests(value: Any) -> tuple[str, ...]:
    """The tests of a row: a list (or array) of names, or the names joined with ';' as summary.csv writes them."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    items = value.split(";") if isinstance(value, str) else value
    try:
        names = (_text(item) for item in items)
        return tuple(dict.fromkeys(name for name in names if name))
    except TypeError:
        return ()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
