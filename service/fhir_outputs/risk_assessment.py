"""PatientAssessment -> RiskAssessment (one prediction per calcinosis type, most likely first).

The rationale texts come from the rule library; this module only places them. No
probabilityDecimal: rule grades are not calibrated probabilities.
"""

from __future__ import annotations

from typing import Any

from ..assessment_model import PatientAssessment, TypeGrade
from ..bibliography import related_artifact_extensions
from .ids import fhir_instant, resource_id
from .narrative import items, narrative, paragraph, sources_in_brief, table
from .references import reference, unique_sorted
from .vocabulary import calcinosis_type_coding, risk_assessment_code_text, risk_display, risk_probability_coding

KIND = "RiskAssessment"


def risk_assessment_id(patient: PatientAssessment) -> str:
    """Stable id of the patient's RiskAssessment."""
    return resource_id(patient, KIND)


def method_text(patient: PatientAssessment) -> str:
    """RiskAssessment.method text: which rule library and version produced the grades."""
    return f"{patient.library} rule library {patient.library_version}"


def build_risk_assessment(patient: PatientAssessment) -> dict[str, Any]:
    """The RiskAssessment of one patient, as an unvalidated dict in FHIR element order."""
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": risk_assessment_id(patient),
        "text": risk_assessment_narrative(patient),
        "status": "final",
        "code": {"text": risk_assessment_code_text()},
        "subject": reference(patient.patient_reference, "Patient"),
        "occurrenceDateTime": fhir_instant(patient.assessed_at),
    }
    if patient.calcinosis_condition:
        resource["condition"] = reference(patient.calcinosis_condition, "Condition")
    resource["method"] = {"text": method_text(patient)}
    basis = unique_sorted(ref for grade in patient.grades for ref in grade.evidence)
    if basis:
        resource["basis"] = [reference(ref) for ref in basis]
    if patient.grades:
        resource["prediction"] = [_prediction(grade) for grade in patient.grades]
    notes = _notes(patient)
    if notes:
        resource["note"] = [{"text": text} for text in notes]
    return resource


def risk_assessment_narrative(patient: PatientAssessment) -> dict[str, str]:
    """Type | grade | why, most likely first; then the assessment's notes and, in brief, the sources."""
    heading = f"{risk_assessment_code_text()}, {fhir_instant(patient.assessed_at)} ({method_text(patient)})"
    rows = [(calcinosis_type_coding(grade.type)["display"], risk_display(grade.risk), grade.rationale.strip())
            for grade in patient.grades]
    blocks = [paragraph(heading), table(("Type", "Grade", "Why"), rows)]
    notes = [note.strip() for note in patient.notes if note.strip()]
    if notes:
        blocks.append(paragraph("Notes:") + items(dict.fromkeys(notes)))
    sources = sources_in_brief(c for grade in patient.grades for c in grade.citations)
    if sources:
        blocks.append(paragraph("Sources:") + items(sources))
    return narrative(*blocks)


def _prediction(grade: TypeGrade) -> dict[str, Any]:
    """One prediction; its citations ride on it as core `cqf-relatedArtifact` extensions, since
    R4 RiskAssessment has no relatedArtifact element (the text is in RiskAssessment.note too)."""
    coding = calcinosis_type_coding(grade.type)
    prediction: dict[str, Any] = {}
    if grade.citations:
        prediction["extension"] = related_artifact_extensions(grade.citations)
    prediction |= {
        "outcome": {"coding": [coding], "text": coding["display"]},
        "qualitativeRisk": {"coding": [risk_probability_coding(grade.risk)]},
    }
    if grade.rationale.strip():
        prediction["rationale"] = grade.rationale.strip()
    return prediction


def _notes(patient: PatientAssessment) -> list[str]:
    """Citations (one per type, deduplicated in prediction order) then the assessment's notes."""
    texts: list[str] = []
    for grade in patient.grades:
        if grade.citation.strip():
            text = f"{grade.type}: {grade.citation.strip()}"
            if text not in texts:
                texts.append(text)
    for note in patient.notes:
        if note.strip() and note.strip() not in texts:
            texts.append(note.strip())
    return texts
