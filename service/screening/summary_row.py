"""One summary row per screened patient: what a team scanning a population sorts and filters on.

Every value is read from the patient's `PatientAssessment`, the same one `$assess` turns into a
RiskAssessment: the leading type and its grade, the calcium, phosphate, Ca x P and eGFR the rules
used (canonical units: mg/dL, mg2/dL2, mL/min/1.73m2) with the day each was taken, and the tests
the work-up still recommends. Nothing is recomputed here.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Iterable

from ..assessment_model import PatientAssessment, ValueUsed

# column -> type, in order ("str", "float", "int", "list[str]"; a trailing "?" allows None)
SUMMARY_COLUMNS: dict[str, str] = {
    "patient_id": "str",
    "top_type": "str?",
    "top_grade": "str?",
    "calcium": "float?",
    "calcium_date": "str?",
    "phosphate": "float?",
    "phosphate_date": "str?",
    "ca_x_p": "float?",
    "ca_x_p_date": "str?",
    "egfr": "float?",
    "egfr_date": "str?",
    "missing_tests": "list[str]",
    "data_problems": "int",
}

# summary column -> the analyte key of `ValueUsed` it shows
_VALUE_COLUMNS = {"calcium": "calcium", "phosphate": "phosphate", "ca_x_p": "ca-x-p", "egfr": "egfr"}


def summary_row(patient_id: str, assessment: PatientAssessment | None, data_problems: int = 0) -> dict[str, Any]:
    """The row of one patient; `assessment` None (the patient could not be assessed) leaves the values empty."""
    row: dict[str, Any] = {column: None for column in SUMMARY_COLUMNS}
    row.update(patient_id=patient_id, missing_tests=[], data_problems=int(data_problems))
    if assessment is None:
        return row
    if assessment.grades:
        row["top_type"] = assessment.leading.type
        row["top_grade"] = assessment.leading.risk
    used = _first_by_analyte(assessment.values_used)
    for column, analyte in _VALUE_COLUMNS.items():
        value = used.get(analyte)
        if value is not None and value.comparator is None:  # a bound ('<3') is not a measured value
            row[column] = float(value.value)
            row[f"{column}_date"] = day_of(value.effective)
    if row["ca_x_p"] is not None:
        # The product is as recent as the later of its two factors.
        row["ca_x_p_date"] = max(filter(None, (row["calcium_date"], row["phosphate_date"], row["ca_x_p_date"])),
                                 default=None)
    row["missing_tests"] = list(dict.fromkeys(test.name for test in assessment.recommended))
    return row


def day_of(moment: datetime | date | None) -> str | None:
    """'YYYY-MM-DD' of a result's effective time, as recorded (no time zone shift)."""
    if moment is None:
        return None
    return (moment.date() if isinstance(moment, datetime) else moment).isoformat()


def _first_by_analyte(values: Iterable[ValueUsed]) -> dict[str, ValueUsed]:
    found: dict[str, ValueUsed] = {}
    for value in values:
        found.setdefault(value.analyte, value)
    return found
