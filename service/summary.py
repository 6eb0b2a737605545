"""The readable text `calcinosis-cds assess FILE` prints: one block per patient.

Plain text, wrapped to about 100 columns, no colours, so it reads the same in a terminal, a log
or an e-mail. It presents what the rule library concluded; it adds no clinical judgement.
"""

from __future__ import annotations

import textwrap
from datetime import date, datetime
from decimal import Decimal
from typing import Iterable, Sequence

from .assessment_model import InputIssue, PatientAssessment, ValueUsed, citations_in_brief, omitted_by_reason
from .fhir_outputs.ids import fhir_instant
from .fhir_outputs.vocabulary import (calcinosis_type_displays, code_system_name, group_panel_tests, panel_group_label,
                                      risk_display)

WIDTH = 100
_INDENT = "  "


def format_summary(patients: Sequence[PatientAssessment], bundle_issues: Sequence[InputIssue]) -> str:
    """The whole summary; patients in the order given, bundle-level skipped inputs last."""
    blocks = [_patient_block(patient) for patient in patients]
    if not patients:
        blocks.append("No patient found in the input.")
    if bundle_issues:
        blocks.append(_section("Skipped inputs not tied to a patient", _issue_lines(bundle_issues)))
    return "\n\n".join(blocks).rstrip() + "\n"


def _patient_block(patient: PatientAssessment) -> str:
    title = f"Calcinosis cutis assessment: {patient.patient_reference}"
    header = [
        title,
        "=" * min(len(title), WIDTH),
        f"Assessed {fhir_instant(patient.assessed_at)} with the {patient.library} rule library "
        f"{patient.library_version}.",
        f"Calcinosis cutis Condition on record: {patient.calcinosis_condition or _none_found(patient)}.",
    ]
    sections = [
        "\n".join(header),
        _section("Types, most likely first", _grade_lines(patient)),
        _section("Values used", _value_lines(patient.values_used) or _wrap(
            "none among the results read (unknown, not normal; some results could not be read)"
            if patient.incomplete_analytes else "none: no usable lab value (unknown, not normal)")),
        _section("Recommended tests", _recommended_lines(patient) or _wrap("none")),
    ]
    if patient.unconfirmed:
        sections.append(_section("Could not confirm (not proposed: check for a current result before ordering)",
                                 _unconfirmed_lines(patient)))
    if patient.omitted:
        sections.append(_section("Not proposed", [
            line for reason, tests in omitted_by_reason(patient.omitted)
            for line in _bullet(", ".join(_test_name(t.display, t.system, t.code) for t in tests) + f": {reason}")]))
    sections.append(_section("Already available (not proposed again)", _available_lines(patient) or _wrap("none")))
    if patient.order_alerts:
        sections.append(_section("Order alerts", [line for alert in patient.order_alerts for line in _bullet(
            f"{alert.display} ({alert.order_reference}): {alert.message}"
            + (f" [{alert.citation}]" if alert.citation else ""))]))
    if patient.notes:
        sections.append(_section("Notes", [line for note in patient.notes for line in _bullet(note)]))
    sections.append(_section("Skipped inputs", _issue_lines(patient.issues) or _wrap("none")))
    return "\n\n".join(sections)


def _none_found(patient: PatientAssessment) -> str:
    """No calcinosis Condition: 'none found', or where it was looked for when the search was partial."""
    if "condition" in patient.incomplete_searches:
        return "none found among the conditions read (the condition search was incomplete)"
    return "none found"


def _grade_lines(patient: PatientAssessment) -> list[str]:
    if not patient.grades:
        return _wrap("no type could be graded")
    displays = calcinosis_type_displays()
    lines: list[str] = []
    for rank, grade in enumerate(patient.grades, start=1):
        name = displays.get(grade.type, grade.type)
        lines.append(f"{_INDENT}{rank}. {name}: {risk_display(grade.risk).lower()}")
        detail_indent = _INDENT + "   "
        if grade.rationale.strip():
            lines.extend(_wrap(grade.rationale.strip(), detail_indent))
        if grade.evidence:
            lines.extend(_wrap("Based on: " + ", ".join(grade.evidence), detail_indent))
        if grade.citation.strip():
            lines.extend(_wrap("Source: " + grade.citation.strip(), detail_indent))
    return lines


def _value_lines(values: Iterable[ValueUsed]) -> list[str]:
    lines: list[str] = []
    for value in values:
        parts = [f"{value.label}: {value.bound_words}{format_decimal(value.value)} {value.unit}"]
        if value.flag:
            parts.append(f"flag {value.flag}")
        parts.append(f"on {format_when(value.effective)}" if value.effective is not None else "date unknown")
        parts.append(f"range {value.range_text}" if value.range_text else "no range given")
        if value.status != "final":
            parts.append(f"status {value.status}")
        parts.append(f"from {value.source}")
        lines.extend(_bullet(", ".join(parts)))
    return lines


def _recommended_lines(patient: PatientAssessment) -> list[str]:
    lines: list[str] = []
    for group, tests in group_panel_tests(patient.recommended):
        lines.append(f"{_INDENT}{panel_group_label(group)}:")
        for test in tests:
            text = _test_name(test.display, test.system, test.code)
            if test.reason.strip():
                text += f": {test.reason.strip()}"
            if test.citations:
                text += f" Source: {citations_in_brief(test.citations)}."
            lines.extend(_bullet(text, _INDENT * 2))
    return lines


def _unconfirmed_lines(patient: PatientAssessment) -> list[str]:
    """Tests whose results may be among data that was not read: named with why, never as missing."""
    return [line for test in patient.unconfirmed for line in _bullet(
        f"{test.display} ({code_system_name(test.system)} {test.code}): {test.reason.strip()}")]
def _test_name(display: str, system: str, code: str) -> str:
    """'Calcium [Mass/volume] in Serum or Plasma (LOINC 17861-6)'; a test named only, by its name."""
    return f"{display} ({code_system_name(system)} {code})" if code else f"{display} (by name, no code)"


def _available_lines(patient: PatientAssessment) -> list[str]:
    return [line for test in patient.available for line in _bullet(
        f"{_test_name(test.display, test.system, test.code)}: {test.summary} from {test.source}")]


def _issue_lines(issues: Iterable[InputIssue]) -> list[str]:
    lines: list[str] = []
    for issue in issues:
        where = f" at {issue.location}" if issue.location else ""
        lines.extend(_bullet(f"{issue.severity} ({issue.code}){where}: {issue.diagnostics}"))
    return lines


def format_decimal(value: Decimal) -> str:
    """Plain notation as the lab gave it (never 1.1E+1)."""
    return format(value, "f")


def format_when(moment: datetime | date | None) -> str:
    """A date or instant for the text summary; 'date unknown' rather than a guessed date."""
    if moment is None:
        return "date unknown"
    if isinstance(moment, datetime):
        return fhir_instant(moment) if moment.tzinfo is not None else moment.isoformat()
    return moment.isoformat()


def _section(title: str, lines: list[str]) -> str:
    return "\n".join([title, "-" * len(title), *lines])


def _bullet(text: str, indent: str = _INDENT) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent + "- ", subsequent_indent=indent + "  ",
                         break_long_words=False, break_on_hyphens=False) or [indent + "-"]


def _wrap(text: str, indent: str = _INDENT) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)
