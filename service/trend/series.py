"""Every result of the charted tests, per patient, marked with what the assessment did with it.

The rules read only the latest current result of each test; a clinician following a patient on
dialysis wants the whole course. So the Bundle is read again with the same ingest and normalize
stages the assessment used (the same units, conversions and reference ranges), and each result of
a charted test becomes a point:

- `used`: the value the assessment used (it is in the assessment's values used);
- `earlier`: a current result, not the one the rules used (an earlier one);
- `stale`: dated before the lookback window, so it no longer counts;
- `skipped`: the assessment could not use it (status, unit, value...), with the issue's reason.

Derived values come from the assessment itself, never recomputed with other rules: the corrected
calcium and the Ca x P the rules used. Earlier Ca x P points are plain products of a calcium and a
phosphate drawn the same day, for the chart only, and say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..assessment_model import AssessmentRun, InputIssue, PatientAssessment
from ..pipeline.ingest import KeptResource, PatientResources, read_bundle
from ..pipeline.normalize import build_facts
from ..terminology import Terminology

CHART_DATA_FILE = Path(__file__).with_name("chart_data.json")
USED, EARLIER, STALE, SKIPPED = "used", "earlier", "stale", "skipped"
PRODUCT = "ca-x-p"
CORRECTED = "calcium-corrected"


@lru_cache(maxsize=1)
def chart_data() -> Mapping[str, Any]:
    """The panels, series and status markers of the chart (chart_data.json)."""
    return json.loads(CHART_DATA_FILE.read_text(encoding="utf-8"))


def series_labels() -> dict[str, str]:
    """Analyte key -> series label, over every panel."""
    return {key: label for panel in chart_data()["panels"] for key, label in panel["series"].items()}


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One result (or derived value) on the chart."""

    analyte: str  # "calcium", "calcium-corrected", "phosphate", "ca-x-p", "pth", "egfr", "vitamin-d-25oh"
    effective: datetime | date | None
    value: Decimal | None  # in `unit`; None when it cannot be placed on the chart (a skipped result)
    unit: str  # the canonical unit the chart's axis is in
    reported: str  # value and unit as the laboratory reported them: "2.7 mmol/L"
    status: str  # USED, EARLIER, STALE or SKIPPED
    why: str  # in plain words, why it has that status
    source: str  # the Observation's reference (or its location), or what a derived value came from
    flag: str | None = None
    range_low: Decimal | None = None
    range_high: Decimal | None = None
    location: str | None = None  # where in the Bundle: "Bundle.entry[7].resource"

    def as_json(self) -> dict[str, Any]:
        """JSON-ready: ISO dates, numbers as floats (a chart needs no exact decimals)."""
        labels = series_labels()
        return {
            "analyte": self.analyte,
            "series": labels.get(self.analyte, self.analyte),
            "date": _iso(self.effective),
            "value": _number(self.value),
            "unit": self.unit,
            "reported": self.reported,
            "status": self.status,
            "statusText": chart_data()["statuses"][self.status]["label"],
            "why": self.why,
            "source": self.source,
            "flag": self.flag,
            "rangeLow": _number(self.range_low),
            "rangeHigh": _number(self.range_high),
            "location": self.location,
        }


@dataclass(frozen=True, slots=True)
class PatientTrend:
    """One assessed patient's points, with the instant and window they were judged by."""

    patient_reference: str
    assessed_at: datetime
    lookback_days: int | None
    points: tuple[TrendPoint, ...] = field(default=())

    @property
    def plotted(self) -> tuple[TrendPoint, ...]:
        """The points that have a place on the chart (a value in the axis unit)."""
        return tuple(point for point in self.points if point.value is not None and point.effective is not None)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready, with the counts a page states beside the chart."""
        return {
            "patient": self.patient_reference,
            "assessedAt": _iso(self.assessed_at),
            "lookbackDays": self.lookback_days,
            "pointCount": len(self.plotted),
            "notPlotted": len(self.points) - len(self.plotted),
            "points": [point.as_json() for point in self.points],
        }


def extract_trends(bundle: object, run: AssessmentRun, *, terminology: Terminology,
                   lookback_days: int | None) -> tuple[PatientTrend, ...]:
    """The trend of every patient `run` assessed from `bundle` (the same decoded Bundle).

    Raises InputError only where the assessment itself would have (the Bundle was already read once).
    """
    assessments = {patient.patient_reference: patient for patient in run.patients}
    trends = []
    for resources in read_bundle(bundle).patients:
        assessment = assessments.get(resources.patient_reference)
        if assessment is not None:
            trends.append(_patient_trend(resources, assessment, terminology, lookback_days))
    return tuple(trends)


def _patient_trend(resources: PatientResources, assessment: PatientAssessment, terminology: Terminology,
                   lookback_days: int | None) -> PatientTrend:
    now = assessment.assessed_at
    facts = build_facts(resources, now=now, terminology=terminology)
    records = {record.source: record for record in facts.records("Observation")}
    reasons = _reasons_by_entry((*resources.issues, *facts.issues, *assessment.issues))
    used = {(value.analyte, value.source) for value in assessment.values_used}
    cutoff = now - timedelta(days=lookback_days) if lookback_days else None
    charted = set(series_labels())
    points: list[TrendPoint] = []
    for kept in (*resources.resources, *resources.skipped):
        if kept.resource_type != "Observation":
            continue
        analyte = _analyte(kept.resource, terminology)
        if analyte is None or analyte not in charted:
            continue
        record = records.get(kept.source) if kept in resources.resources else None
        points.append(_result_point(kept, analyte, record, terminology, used, cutoff,
                                    reasons.get(kept.entry_index, ())))
    points.extend(_derived_points(assessment, records))
    points.extend(_earlier_products(points, assessment))
    points.sort(key=lambda p: (p.analyte, _sort_key(p.effective)))
    return PatientTrend(assessment.patient_reference, now, lookback_days, tuple(points))


def _result_point(kept: KeptResource, analyte: str, record: Any, terminology: Terminology,
                  used: set[tuple[str, str]], cutoff: datetime | None, reasons: Sequence[str]) -> TrendPoint:
    unit = terminology.analyte(analyte).canonical_unit or ""
    reported = _reported(kept.resource)
    if record is None:
        why = "; ".join(reasons) or "not read by the assessment"
        return TrendPoint(analyte, _raw_date(kept.resource), _same_unit_value(kept.resource, unit), unit, reported,
                          SKIPPED, why, kept.source, location=kept.location)
    quantity = record.get("value")
    effective = record.get("effective")
    reference_range = record.get("referenceRange")
    low = getattr(getattr(reference_range, "low", None), "value", None)
    high = getattr(getattr(reference_range, "high", None), "value", None)
    if (analyte, kept.source) in used:
        status, why = USED, "the result the rules used"
    elif cutoff is not None and isinstance(effective, datetime) and _aware(effective) < cutoff:
        status, why = STALE, "older than the lookback window: no longer current"
    else:
        status, why = EARLIER, "not the result the rules used (they read the latest current one)"
    value = getattr(quantity, "value", None)
    if record.get("comparator"):
        why += f"; a bound ({reported}), not a measured value"
    return TrendPoint(analyte, effective, value, unit, reported, status, why, kept.source,
                      flag=record.get("interpretation"), range_low=low, range_high=high, location=kept.location)


def _derived_points(assessment: PatientAssessment, records: Mapping[str, Any]) -> list[TrendPoint]:
    """The corrected calcium, Ca x P and computed eGFR the assessment used: values with no result of their own."""
    points = []
    for value in assessment.values_used:
        source_record = records.get(value.source)
        own_result = source_record is not None and source_record.get("analyte") == value.analyte
        if own_result or value.analyte not in series_labels():
            continue
        low = high = None
        if value.analyte == CORRECTED and source_record is not None:
            reference_range = source_record.get("referenceRange")
            low = getattr(getattr(reference_range, "low", None), "value", None)
            high = getattr(getattr(reference_range, "high", None), "value", None)
        points.append(TrendPoint(
            value.analyte, value.effective, value.value, value.unit,
            f"{value.bound_words}{_plain(value.value)} {value.unit} (computed by the rules)", USED,
            f"{value.label}, computed by the rules from the results they used", value.source,
            flag=value.flag, range_low=low, range_high=high))
    return points


def _earlier_products(points: Sequence[TrendPoint], assessment: PatientAssessment) -> list[TrendPoint]:
    """Ca x P of each earlier day with both a calcium and a phosphate measured (exact values only)."""
    used_days = {_day(value.effective) for value in assessment.values_used if value.analyte == PRODUCT}
    by_day: dict[date, dict[str, TrendPoint]] = {}
    for point in points:
        if point.analyte in ("calcium", "phosphate") and point.status in (EARLIER, STALE, USED) \
                and point.value is not None and point.unit == "mg/dL" and "a bound" not in point.why:
            day = _day(point.effective)
            if day is not None:
                by_day.setdefault(day, {})[point.analyte] = point
    products = []
    for day, pair in sorted(by_day.items()):
        if day in used_days or len(pair) < 2:
            continue
        calcium, phosphate = pair["calcium"], pair["phosphate"]
        stale = STALE in (calcium.status, phosphate.status)
        value = calcium.value * phosphate.value  # type: ignore[operator]
        products.append(TrendPoint(
            PRODUCT, calcium.effective, value, "mg2/dL2",
            f"{_plain(value)} mg2/dL2 ({calcium.reported} x {phosphate.reported})", STALE if stale else EARLIER,
            "computed for the chart from the same day's calcium and phosphate; the rules use only the latest",
            f"{calcium.source} x {phosphate.source}"))
    return products


def _analyte(resource: Mapping[str, Any], terminology: Terminology) -> str | None:
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    for coding in codings if isinstance(codings, list) else ():
        if isinstance(coding, dict):
            found = terminology.analyte_for(coding.get("system"), coding.get("code"))
            if found is not None:
                return found.analyte
    return None


def _reasons_by_entry(issues: Iterable[InputIssue]) -> dict[int, tuple[str, ...]]:
    """Warnings and errors by the Bundle entry they concern: why a result was skipped."""
    found: dict[int, list[str]] = {}
    for issue in issues:
        if issue.entry_index is not None and issue.severity in ("fatal", "error", "warning"):
            text = issue.diagnostics
            if text not in found.setdefault(issue.entry_index, []):
                found[issue.entry_index].append(text)
    return {index: tuple(texts) for index, texts in found.items()}


def _reported(resource: Mapping[str, Any]) -> str:
    """The value as the laboratory sent it, unit included: '2.7 mmol/L', '<3 pg/mL', 'see note'."""
    quantity = resource.get("valueQuantity")
    if isinstance(quantity, dict):
        unit = quantity.get("unit") or quantity.get("code") or "(no unit)"
        return f"{quantity.get('comparator') or ''}{quantity.get('value')} {unit}"
    for element in ("valueString", "valueInteger"):
        if element in resource:
            return str(resource[element])[:60]
    return "(no value)"


def _same_unit_value(resource: Mapping[str, Any], unit: str) -> Decimal | None:
    """A skipped result's value when it is already in the axis unit (so it can be shown where it lies)."""
    quantity = resource.get("valueQuantity")
    if not isinstance(quantity, dict) or quantity.get("comparator"):
        return None
    if unit not in (quantity.get("code"), quantity.get("unit")):
        return None
    raw = quantity.get("value")
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    try:
        return Decimal(str(raw))
    except InvalidOperation:
        return None


def _raw_date(resource: Mapping[str, Any]) -> datetime | date | None:
    text = resource.get("effectiveDateTime") or resource.get("issued")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text else date.fromisoformat(text)
    except ValueError:
        return None


def _day(moment: datetime | date | None) -> date | None:
    if isinstance(moment, datetime):
        return _aware(moment).date()
    return moment


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _sort_key(moment: datetime | date | None) -> str:
    return _iso(moment) or ""


def _iso(moment: datetime | date | None) -> str | None:
    if isinstance(moment, datetime):
        return _aware(moment).isoformat().replace("+00:00", "Z")
    if isinstance(moment, date):
        return moment.isoformat()
    return None


def _number(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral() else format(round(value, 2), "f")
