"""One call for the surfaces: assess a Bundle and read its trend, with the same Assessor.

Also adds the chart documents to a `$assess` result Bundle when the caller asks for them.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from ..assessment_model import AssessmentRun
from ..fhir_outputs.references import reference
from .chart_document import chart_document
from .chart_spec import trend_spec
from .render import to_svg
from .series import PatientTrend, extract_trends


def trends_of(assessor: Any, bundle: object, run: AssessmentRun, settings: Mapping[str, Any]
              ) -> tuple[PatientTrend, ...]:
    """The trend of every patient of `run` (assessed by `assessor` from `bundle`)."""
    lookback = settings.get("LOOKBACK_DAYS")
    return extract_trends(bundle, run, terminology=assessor.terminology,
                          lookback_days=int(lookback) if lookback else None)


def add_chart_documents(result: dict[str, Any], trends: tuple[PatientTrend, ...], *, width: int = 640) -> dict[str, Any]:
    """`result` (the `$assess` Bundle) with, after each patient's RiskAssessment, its chart DocumentReference."""
    entries = list(result.get("entry") or [])
    known_types = {entry["fullUrl"]: entry["resource"]["resourceType"] for entry in entries}
    # Matched on the subject as the RiskAssessment writes it: a patient sent without id or fullUrl
    # is named by a display only, with no reference to match on.
    risk_by_patient = {_subject_key(entry["resource"].get("subject")): index for index, entry in enumerate(entries)
                       if entry["resource"]["resourceType"] == "RiskAssessment"}
    for trend in reversed(trends):  # from the end, so earlier positions stay valid
        position = risk_by_patient.get(_subject_key(reference(trend.patient_reference, "Patient")))
        risk_id = entries[position]["resource"]["id"] if position is not None else None
        svg = to_svg(trend_spec(trend.as_json(), width=width))
        document = chart_document(trend, svg, risk_id, known_types)
        entry = {"fullUrl": f"urn:uuid:{document['id']}", "resource": document}
        entries.insert(position + 1 if position is not None else len(entries), entry)
    return {**result, "entry": entries} if entries else result


def _subject_key(subject: Any) -> str:
    return orjson.dumps(subject, option=orjson.OPT_SORT_KEYS).decode("utf-8")
