"""What the CQL tests share: the model, the shipped library, the evaluation instant and a library
header, kept in one place so that every test compiles against the same set-up; and the compliance
case files (tests/cql_compliance/*.json): loading, value decoding, a facts provider.

Format: see the project issue "cql_like: a CQL-subset rule language". A case is
an expression (wrapped into a one-define library) or a whole library body; it
expects a typed value, or an error kind (syntax | name | type | evaluation),
and optionally the exact evidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from service.cql_like import load_model_info
from service.cql_like.operators import parse_datetime
from service.cql_like.quantity import Quantity
from service.cql_like.values import Code, Concept, CqlTuple, Interval, Record

ROOT = Path(__file__).resolve().parents[1]
MODEL_PATH = ROOT / "service" / "knowledge" / "model.json"
MODEL = load_model_info(MODEL_PATH)
SHIPPED_LIBRARY = ROOT / "service" / "knowledge" / "CalcinosisCutis.cql"
SHIPPED_VALUESETS = ROOT / "service" / "knowledge" / "valuesets"
NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)
HEADER = "library T version '1'\nusing CalcinosisFacts version '1.0.0'\ncontext Patient\n"
# Comparing amounts of substance with mass concentrations fails when it is evaluated.
FAILS = "(2.5 'mmol/L' > 10 'mg/dL')"

CASES_DIR = Path(__file__).with_name("cql_compliance")
DEFAULT_NOW = "2026-11-15T09:00:00Z"
MODEL_TYPES = ("Observation", "Condition", "MedicationRequest", "MedicationAdministration", "MedicationStatement",
               "Procedure", "ServiceRequest")


@dataclass
class Case:
    file_stem: str
    name: str
    source: str
    now: datetime
    facts: dict
    valuesets: dict
    expected: Any = None
    error: str | None = None
    evidence: list[str] | None = None
    raw: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.file_stem}::{self.name}"


def wrap(preamble: str | None, body: str) -> str:
    head = "library Compliance version '1.0.0'\nusing CalcinosisFacts version '1.0.0'\n"
    if preamble:
        head += preamble.rstrip("\n") + "\n"
    return head + "context Patient\n" + body


def iter_cases(directory: Path = CASES_DIR) -> Iterator[Case]:
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for raw in data["cases"]:
            if "library" in raw:
                source = wrap(data.get("preamble"), raw["library"])
            else:
                source = wrap(data.get("preamble"), f'define "Result": {raw["expression"]}')
            yield Case(
                file_stem=path.stem,
                name=raw["name"],
                source=source,
                now=parse_datetime(raw.get("now") or data.get("now") or DEFAULT_NOW),
                facts=raw.get("facts", data.get("facts", {})),
                valuesets=raw.get("valuesets", data.get("valuesets", {})),
                expected=raw.get("expected"),
                error=raw.get("error"),
                evidence=raw.get("evidence"),
                raw=raw,
            )


def decode(value: Any, records: dict[str, Record] | None = None) -> Any:
    """Typed JSON -> runtime value (see the format's value encoding)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        raise ValueError(f"bare JSON number {value!r}: write decimals as {{\"decimal\": \"...\"}}")
    if isinstance(value, list):
        return [decode(v, records) for v in value]
    if not isinstance(value, dict) or len(value.keys() - {"lowClosed", "highClosed"}) != 1:
        raise ValueError(f"cannot decode {value!r}")
    (kind,) = value.keys() - {"lowClosed", "highClosed"}
    body = value[kind]
    if kind == "decimal":
        return Decimal(body)
    if kind == "quantity":
        return Quantity(Decimal(body[0]), body[1])
    if kind == "date":
        return date.fromisoformat(body)
    if kind == "datetime":
        parsed = parse_datetime(body)
        if parsed is None:
            raise ValueError(f"bad datetime {body!r}")
        return parsed
    if kind == "interval":
        return Interval(decode(body[0], records), decode(body[1], records),
                        value.get("lowClosed", True), value.get("highClosed", True))
    if kind == "tuple":
        return CqlTuple({k: decode(v, records) for k, v in body.items()})
    if kind == "code":
        return Code(body[1], body[0])
    if kind == "concept":
        return Concept(tuple(Code(c[1], c[0]) for c in body))
    if kind == "record":
        if records is None or body not in records:
            raise ValueError(f"no fact record {body!r}")
        return records[body]
    raise ValueError(f"unknown value kind {kind!r}")


def _record(type_name: str, raw: dict) -> Record:
    fields = {k: decode(v) for k, v in raw.items() if k != "source"}
    return Record(type_name, fields, raw.get("source"))


class FactsProvider:
    """A data provider over a case's "facts" (the engine's provider protocol)."""

    def __init__(self, facts: dict) -> None:
        self._patient = _record("Patient", facts["patient"]) if facts.get("patient") else None
        self._records: dict[str, list[Record]] = {
            type_name: [_record(type_name, raw) for raw in facts.get(type_name, [])] for type_name in MODEL_TYPES}
        self.by_source = {r.source: r for rs in self._records.values() for r in rs if r.source}
        if self._patient is not None and self._patient.source:
            self.by_source[self._patient.source] = self._patient
        self.retrieves: list[tuple[str, frozenset | None]] = []

    def patient(self) -> Record | None:
        return self._patient

    def retrieve(self, type_name: str, codes: frozenset | None) -> list[Record]:
        self.retrieves.append((type_name, codes))
        records = self._records.get(type_name, [])
        if codes is None:
            return list(records)
        wanted = {(c.system, c.code) for c in codes}
        out = []
        for record in records:
            concept = record.get("code")
            coded = concept.codes if isinstance(concept, Concept) else (concept,) if isinstance(concept, Code) else ()
            if any((c.system, c.code) in wanted for c in coded):
                out.append(record)
        return out


class EmptyProvider:
    """A data provider with no patient and no records."""

    def patient(self) -> Record | None:
        return None

    def retrieve(self, type_name: str, codes: frozenset | None) -> list[Record]:
        return []


def same_value(actual: Any, expected: Any) -> bool:
    """Type-strict comparison: Integer 2 is not Decimal 2.0; Decimals compare by value; quantities by value and unit."""
    if expected is None or actual is None:
        return actual is None and expected is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual is expected
    if type(actual) is not type(expected):
        return False
    if isinstance(expected, Quantity):
        return actual.value == expected.value and actual.unit == expected.unit
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(same_value(a, e) for a, e in zip(actual, expected))
    if isinstance(expected, CqlTuple):
        return list(actual) == list(expected) and all(same_value(actual[k], expected[k]) for k in expected)
    if isinstance(expected, Interval):
        return (same_value(actual.low, expected.low) and same_value(actual.high, expected.high)
                and actual.low_closed == expected.low_closed and actual.high_closed == expected.high_closed)
    if isinstance(expected, Record):
        return actual is expected
    return actual == expected
