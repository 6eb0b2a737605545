"""The screening report's charts: the Vega-Lite templates of report_charts.json filled with the
report's counts and drawn to SVG offline by vl-convert (the renderer the trend chart uses).

Each chart is small whatever the population: it plots counts (a bar per type, per bin, per test),
never one mark per patient. The SVG is inlined in the page; any id it defines is prefixed with
the chart's name so that two charts on one page can never refer to each other's elements.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Mapping

from ..trend.render import to_svg
from .report_tally import ReportTally, report_data

_PLACEHOLDER = "@"
_ID = re.compile(r'\bid="([^"]+)"')
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*>\s*")


def grade_label(grade: str | None) -> str:
    return grade if grade is not None else report_data()["not_graded"]


def type_label(kind: str | None) -> str:
    return kind if kind is not None else "no type graded"


def grades_spec(counts: ReportTally) -> dict[str, Any] | None:
    """Patients by most likely type, a bar each, stacked by grade; None with no patient."""
    if not counts.patients:
        return None
    columns = counts.grade_columns()
    colours = report_data()["grades"]
    rows = [{"type": type_label(kind), "grade": grade_label(grade),
             "grade_order": column_index, "patients": counts.by_type_grade[(kind, grade)]}
            for kind in counts.type_rows()
            for column_index, grade in enumerate(columns) if counts.by_type_grade[(kind, grade)]]
    labels = [grade_label(grade) for grade in columns]
    return fill(report_data()["charts"]["grades"], {
        "rows": rows, "grade_domain": labels, "type_domain": [type_label(kind) for kind in counts.type_rows()],
        "grade_range": [colours.get(label, {}).get("colour", "#667085") for label in labels]})


def ca_x_p_spec(counts: ReportTally) -> dict[str, Any] | None:
    """The histogram of the latest Ca x P with the threshold line; None when no patient has a Ca x P."""
    if not counts.ca_x_p_values:
        return None
    threshold = report_data()["ca_x_p_threshold"]
    below, at_or_above = _sides(counts.threshold)
    bins = counts.histogram()
    rows = [{"start": b.start, "end": b.end if b.end is not None else b.start + counts.bin_width,
             "patients": b.patients, "bin": b.label, "side": at_or_above if b.start >= counts.threshold else below}
            for b in bins if b.patients]
    ticks = [b.start for b in bins] + [bins[-1].start + counts.bin_width]
    last = _tick(bins[-1].start)
    labels = f"datum.value == {last} ? '{last}+' : datum.value > {last} ? '' : datum.label"
    return fill(report_data()["charts"]["ca_x_p"], {
        "rows": rows, "side_domain": [below, at_or_above], "x_domain": [0, ticks[-1]],
        # every layer states the same axis: Vega-Lite drops axis properties the layers disagree on
        "x_axis": {"values": ticks, "labelExpr": labels, "labelOverlap": False},
        "threshold": [{"value": counts.threshold, "label": f"{_tick(counts.threshold)} {threshold['unit']}"}]})


def gaps_spec(counts: ReportTally) -> dict[str, Any] | None:
    """Patients still needing each test, most needed first; None when no test is missing."""
    gaps = counts.gap_rows()
    if not gaps:
        return None
    rows = [{"test": test, "patients": patients} for test, patients, _ in gaps]
    return fill(report_data()["charts"]["gaps"], {"rows": rows, "test_domain": [test for test, _, _ in gaps]})


def svg(spec: Mapping[str, Any], name: str) -> str:
    """The chart as inline SVG: no XML declaration, ids prefixed with `name`."""
    drawn = _XML_DECLARATION.sub("", to_svg(spec))
    ids = set(_ID.findall(drawn))
    for identifier in sorted(ids, key=len, reverse=True):
        prefixed = f"{name}-{identifier}"
        drawn = (drawn.replace(f'id="{identifier}"', f'id="{prefixed}"')
                 .replace(f"url(#{identifier})", f"url(#{prefixed})")
                 .replace(f'href="#{identifier}"', f'href="#{prefixed}"'))
    return drawn


def fill(template: Any, values: Mapping[str, Any]) -> Any:
    """A copy of `template` with every string value "@name" replaced by values[name]."""
    if isinstance(template, str) and template.startswith(_PLACEHOLDER):
        return copy.deepcopy(values[template[len(_PLACEHOLDER):]])
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, values) for value in template]
    return template


def _sides(threshold: float) -> tuple[str, str]:
    return f"below {_tick(threshold)}", f"{_tick(threshold)} or above"


def _tick(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
