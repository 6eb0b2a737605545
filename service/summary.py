"""The readable text `calcinosis-cds assess FILE` prints: one block per patient, read like a card.

Plain text within 100 columns, no colours, so it reads the same in a terminal, a log or an e-mail.
The types come first as a compact table (type, grade, the start of why), then the leading type
and any other at least moderate in full; the missing work-up is a list of test names; resources
are named where the assessment knows their name, else by a short id (a uuid is cut to its first 8
hex digits: `--format json` keeps the full references); each passage cited is printed once, at
the end, and referred to by number. It presents what the rule library concluded; it adds no
clinical judgement.
"""

from __future__ import annotations

import re
import textwrap
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable, Sequence

from .assessment_model import RISK_ORDER, Citation, InputIssue, PatientAssessment, TypeGrade, ValueUsed
from .fhir_outputs.ids import fhir_instant
from .fhir_outputs.vocabulary import (calcinosis_type_displays, code_system_name, group_panel_tests, panel_group_label,
                                      risk_display)

WIDTH = 100
WHY_LIMIT = 90  # the most of a rationale a table row shows; the row's width caps it further
_INDENT = "  "
_ELLIPSIS = "…"
_UUID = re.compile(r"([0-9a-fA-F]{8})-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TYPE_SUFFIX = " calcinosis cutis"


def format_summary(patients: Sequence[PatientAssessment], bundle_issues: Sequence[InputIssue]) -> str:
    """The whole summary; patients in the order given, bundle-level skipped inputs, then the sources cited."""
    sources = _Sources()
    blocks = [_patient_block(patient, sources) for patient in patients]
    if not patients:
        blocks.append("No patient found in the input.")
    if bundle_issues:
        blocks.append(_section("Skipped inputs not tied to a patient", _issue_lines(bundle_issues)))
    if sources:
        blocks.append(_section("Sources", sources.lines()))
    return "\n\n".join(blocks).rstrip() + "\n"


def short_reference(reference: str) -> str:
    """A reference a reader can scan: a uuid cut to its first 8 hex digits ('urn:uuid:170cbf6b…',
    'Patient/0e36c8df…'); any other reference ('Observation/obs-ca-1') as it is."""
    return _UUID.sub(lambda match: match.group(1) + _ELLIPSIS, reference, count=1)


def plain_test_name(test: Any) -> str:
    """A test's plain name ('PTH') where the work-up gives one, else its display."""
    name = getattr(test, "name", None)
    return name.strip() if isinstance(name, str) and name.strip() else test.display


class _Sources:
    """The passages cited, numbered in the order first referred to, each printed once at the end."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._numbers)

    def refer(self, citations: Iterable[Citation]) -> list[int]:
        """The numbers of `citations`, giving a new number to a passage not cited before."""
        numbers: list[int] = []
        for citation in citations:
            number = self._numbers.setdefault(citation.text, len(self._numbers) + 1)
            if number not in numbers:
                numbers.append(number)
        return numbers

    def lines(self) -> list[str]:
        lines: list[str] = []
        for text, number in self._numbers.items():
            mark = f"[{number}] "
            lines.extend(textwrap.wrap(text, WIDTH, initial_indent=_INDENT + mark,
                                       subsequent_indent=_INDENT + " " * len(mark),
                                       break_long_words=False, break_on_hyphens=False))
        return lines


def _numbers(numbers: Sequence[int]) -> str:
    """'[1, 3]', with a run of three or more as a range ('[2-6]') so a table row keeps room for its why."""
    runs: list[list[int]] = []
    for number in sorted(set(numbers)):
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    parts = [f"{run[0]}-{run[-1]}" if len(run) >= 3 else ", ".join(map(str, run)) for run in runs]
    return f"[{', '.join(parts)}]" if parts else ""


class _Names:
    """What the assessment calls the resources it read: a lab value's label, an order's display."""

    def __init__(self, patient: PatientAssessment) -> None:
        self._names: dict[str, str] = {}
        for value in patient.values_used:
            self._add(value.source, value.label)
        for test in patient.available:
            self._add(test.source, plain_test_name(test))
        for alert in patient.order_alerts:
            self._add(alert.order_reference, alert.display)

    def _add(self, reference: str, name: object) -> None:
        if reference and isinstance(name, str) and name.strip():
            self._names.setdefault(reference, " ".join(name.split()))

    def listed(self, references: Iterable[str]) -> str:
        """'Calcium (serum), Phosphate (serum), Condition/esrd': named resources first, then the others
        by short id; a name shared by two resources carries each one's short id, so they stay apart."""
        references = list(dict.fromkeys(r for r in references if r))
        names = [self._names.get(r) for r in references]
        shared = {n for n in names if n is not None and names.count(n) > 1}
        named = [f"{n} ({short_reference(r)})" if n in shared else n
                 for r, n in zip(references, names) if n is not None]
        return ", ".join(named + [short_reference(r) for r, n in zip(references, names) if n is None])


def _patient_block(patient: PatientAssessment, sources: _Sources) -> str:
    names = _Names(patient)
    title = f"Calcinosis cutis assessment: {short_reference(patient.patient_reference)}"
    header = [
        title,
        "=" * min(len(title), WIDTH),
        f"Assessed {fhir_instant(patient.assessed_at)} with the {patient.library} rule library "
        f"{patient.library_version}.",
        _sentence("Calcinosis cutis Condition on record: " + (
            short_reference(patient.calcinosis_condition) if patient.calcinosis_condition else _none_found(patient))),
    ]
    sections = ["\n".join(header), _section("Types, most likely first", _type_table(patient, sources))]
    for grade in _explained(patient):
        sections.append(_section(_grade_title(grade), _grade_detail(grade, names, sources.refer(grade.citations))))
    sections.extend([
        _section("Values used", _value_lines(patient.values_used) or _wrap(
            "none among the results read (unknown, not normal; some results could not be read)"
            if patient.incomplete_analytes else "none: no usable lab value (unknown, not normal)")),
        _section("Recommended tests", _recommended_lines(patient, sources) or _wrap("none")),
    ])
    if patient.unconfirmed:
        sections.append(_section("Could not confirm (not proposed: check for a current result before ordering)",
                                 _by_reason(patient.unconfirmed)))
    if patient.omitted:
        sections.append(_section("Not proposed", _by_reason(patient.omitted)))
    sections.append(_section("Already available (not proposed again)", _available_lines(patient) or _wrap("none")))
    if patient.order_alerts:
        sections.append(_section("Order alerts", [line for alert in patient.order_alerts for line in _bullet(
            f"{alert.display} ({short_reference(alert.order_reference)}): {alert.message}"
            + (f" {_numbers(sources.refer(alert.citations))}" if alert.citations else ""))]))
    if patient.notes:
        sections.append(_section("Notes", [line for note in patient.notes for line in _bullet(note)]))
    sections.append(_section("Skipped inputs", _issue_lines(patient.issues) or _wrap("none")))
    return "\n\n".join(sections)


def _none_found(patient: PatientAssessment) -> str:
    """No calcinosis Condition: 'none found', or where it was looked for when the search was partial."""
    if "condition" in patient.incomplete_searches:
        return "none found among the conditions read (the condition search was incomplete)"
    return "none found"


def _type_name(grade: TypeGrade) -> str:
    """'Metastatic' for 'Metastatic calcinosis cutis': the table's first column."""
    display = calcinosis_type_displays().get(grade.type, grade.type)
    return display.removesuffix(_TYPE_SUFFIX) or display


def _columns(grades: Sequence[TypeGrade]) -> tuple[int, int, int]:
    """Widths of the type and grade columns, and the most of a why a row has room for.

    The widths fit every type and grade, not just this patient's, so several patients' tables align.
    """
    type_width = max(len("type"), *(len(_type_name(g)) for g in grades),
                     *(len(d.removesuffix(_TYPE_SUFFIX)) for d in calcinosis_type_displays().values()))
    grade_width = max(len("grade"), *(len(g.risk) for g in grades), *(len(risk) for risk in RISK_ORDER))
    room = WIDTH - len(_INDENT) - type_width - 2 - grade_width - 2
    return type_width, grade_width, max(20, min(WHY_LIMIT, room))


def _why(grade: TypeGrade) -> str:
    return " ".join(grade.rationale.split()) or "(no rationale given)"


def _type_table(patient: PatientAssessment, sources: _Sources) -> list[str]:
    """One line per type: type, grade, and why cut to fit the row, ended by the numbers of its sources."""
    if not patient.grades:
        return _wrap("no type could be graded")
    type_width, grade_width, limit = _columns(patient.grades)
    rows = [("type", "grade", "why")]
    for grade in patient.grades:
        cited = _numbers(sources.refer(grade.citations))
        why = _cut(_why(grade), limit - len(cited) - 1) + f" {cited}" if cited else _cut(_why(grade), limit)
        rows.append((_type_name(grade), grade.risk, why))
    return [f"{_INDENT}{name:<{type_width}}  {grade:<{grade_width}}  {why}".rstrip() for name, grade, why in rows]


def _explained(patient: PatientAssessment) -> list[TypeGrade]:
    """The types told in full: the leading one, and any other at least moderate (as a card shows them);
    a leading type whose row already says all there is (its whole why, no resource, no source) is not
    told twice."""
    if not patient.grades:
        return []
    limit = _columns(patient.grades)[2]
    return [grade for rank, grade in enumerate(patient.grades)
            if RISK_ORDER.get(grade.risk, 0) >= RISK_ORDER["moderate"]
            or (rank == 0 and (grade.evidence or grade.citations or len(_why(grade)) > limit))]


def _grade_title(grade: TypeGrade) -> str:
    return f"{calcinosis_type_displays().get(grade.type, grade.type)}: {risk_display(grade.risk).lower()}"


def _grade_detail(grade: TypeGrade, names: _Names, numbers: list[int]) -> list[str]:
    lines = _wrap(grade.rationale.strip()) if grade.rationale.strip() else []
    if grade.evidence:
        lines.extend(_wrap(_sentence(f"Based on: {names.listed(grade.evidence)}")))
    if numbers:
        lines.extend(_wrap(f"Sources: {_numbers(numbers)}."))
    return lines or _wrap("no rationale given")


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
        parts.append(f"from {short_reference(value.source)}")
        lines.extend(_bullet(", ".join(parts)))
    return lines


def _recommended_lines(patient: PatientAssessment, sources: _Sources) -> list[str]:
    """The missing work-up by group, one test name a line; the reasons are in the CarePlan (`--format json`)."""
    lines: list[str] = []
    for group, tests in group_panel_tests(patient.recommended):
        lines.append(f"{_INDENT}{panel_group_label(group)}:")
        for test in tests:
            cited = _numbers(sources.refer(test.citations))
            lines.extend(_bullet(_test_name(test) + (f" {cited}" if cited else ""), _INDENT * 2))
    return lines


def _test_name(test: Any) -> str:
    """'PTH (LOINC 2731-8)'; a test proposed by name only says so."""
    name = plain_test_name(test)
    return f"{name} ({code_system_name(test.system)} {test.code})" if test.code else f"{name} (by name, no code)"


def _by_reason(tests: Sequence[Any]) -> list[str]:
    """Tests left out for one reason: the reason once, whole, then each test on a line of its own."""
    groups: dict[str, list[Any]] = {}
    for test in tests:
        groups.setdefault(" ".join(test.reason.split()).rstrip("."), []).append(test)
    lines: list[str] = []
    for reason, grouped in groups.items():
        lines.extend(_wrap(f"{reason or 'no reason given'}:"))
        lines.extend(_one_line(_test_name(test), _INDENT * 2) for test in grouped)
    return lines


def _available_lines(patient: PatientAssessment) -> list[str]:
    return [line for test in patient.available for line in _bullet(
        f"{_test_name(test)}: {test.summary} from {short_reference(test.source)}")]


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


def _cut(text: str, limit: int) -> str:
    """`text` whole when it fits in `limit` characters, else cut at a word boundary and ended with '…'."""
    if len(text) <= limit:
        return text
    room = text[:limit - len(_ELLIPSIS) + 1]
    head = room.rsplit(" ", 1)[0] if " " in room else room[:limit - len(_ELLIPSIS)]
    return head.rstrip(" ,;:.(") + _ELLIPSIS


def _sentence(text: str) -> str:
    """`text` ended by a full stop, unless it already ends with one or with '…'."""
    return text if text.endswith((".", _ELLIPSIS)) else text + "."


def _one_line(text: str, indent: str = _INDENT) -> str:
    """One bullet line within the width: a longer text is cut at a word boundary ('…')."""
    prefix = indent + "- "
    return prefix + _cut(" ".join(text.split()), WIDTH - len(prefix))


def _section(title: str, lines: list[str]) -> str:
    return "\n".join([title, "-" * len(title), *lines])


def _bullet(text: str, indent: str = _INDENT) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent + "- ", subsequent_indent=indent + "  ",
                         break_long_words=False, break_on_hyphens=False) or [indent + "-"]


def _wrap(text: str, indent: str = _INDENT) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)
