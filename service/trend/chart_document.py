"""The trend chart as a FHIR `DocumentReference` an EHR can file beside the RiskAssessment.

The SVG travels inline (`content.attachment.data`, base64), so the document needs no second
request and no URL that could expire; `context.related` points at the patient's RiskAssessment in
the same result Bundle. Validated as R4 like every other output.
"""

from __future__ import annotations

import base64
from typing import Any, Mapping

from ..fhir_outputs.ids import fhir_instant, stable_id, urn
from ..fhir_outputs.references import reference
from ..fhir_outputs.validation import validate_resource
from .series import PatientTrend

SVG_MEDIA_TYPE = "image/svg+xml"
TITLE = "Calcium, phosphate and Ca x P trend"


def chart_document(trend: PatientTrend, svg: str, risk_assessment_id: str | None,
                   known_types: Mapping[str, str]) -> dict[str, Any]:
    """A validated DocumentReference carrying `svg` for `trend`'s patient."""
    count = len(trend.plotted)
    data = svg.encode("utf-8")
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": stable_id("DocumentReference", trend.patient_reference, fhir_instant(trend.assessed_at),
                        str(len(data)), str(count)),
        "text": {"status": "generated",
                 "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{TITLE}: {count} results plotted '
                        f"(SVG image attached).</p></div>"},
        "status": "current",
        "type": {"text": "Laboratory trend chart"},
        "subject": reference(trend.patient_reference, "Patient"),
        "date": fhir_instant(trend.assessed_at),
        "description": f"{TITLE}: {count} results plotted, each marked used, earlier, stale or skipped",
        "content": [{"attachment": {"contentType": SVG_MEDIA_TYPE, "title": f"{TITLE}.svg", "size": len(data),
                                    "data": base64.b64encode(data).decode("ascii")}}],
    }
    if risk_assessment_id:
        resource["context"] = {"related": [reference(urn(risk_assessment_id), "RiskAssessment")]}
    return validate_resource(resource, known_types)
