"""RiskAssessment: one prediction per type, most likely first, coded, with rationale and basis."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from service.fhir_outputs import OutputValidationError, build_result_bundle
from service.fhir_outputs.risk_assessment import build_risk_assessment
from test_outputs_scenarios import (ASSESSED_AT, dystrophic_with_condition, metastatic_high, no_labs,
                                    resources_of, validate_r4)

TYPE_SYSTEM = "https://calcinosis-cds.org/fhir/CodeSystem/calcinosis-type"
RISK_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"


def risk_assessment_of(patient):
    bundle = build_result_bundle([patient], [])
    (risk,) = resources_of(bundle, "RiskAssessment")
    validate_r4(risk)
    return risk


def test_metastatic_high_predictions_keep_the_core_order_most_likely_first():
    risk = risk_assessment_of(metastatic_high())
    outcomes = [p["outcome"]["coding"][0]["code"] for p in risk["prediction"]]
    grades = [p["qualitativeRisk"]["coding"][0]["code"] for p in risk["prediction"]]
    assert outcomes == ["metastatic", "calciphylaxis", "iatrogenic", "dystrophic", "idiopathic"]
    assert grades == ["high", "moderate", "low", "negligible", "negligible"]


def test_prediction_codings_use_the_service_codesystem_and_hl7_risk_probability_displays():
    first = risk_assessment_of(metastatic_high())["prediction"][0]
    assert first["outcome"]["coding"] == [
        {"system": TYPE_SYSTEM, "code": "metastatic", "display": "Metastatic calcinosis cutis"}]
    assert first["qualitativeRisk"]["coding"] == [
        {"system": RISK_SYSTEM, "code": "high", "display": "High likelihood"}]


def test_rationale_carries_the_numbers_and_no_probability_is_invented():
    risk = risk_assessment_of(metastatic_high())
    assert "11.2 mg/dL" in risk["prediction"][0]["rationale"]
    assert "79.5" in risk["prediction"][0]["rationale"]
    assert all("probabilityDecimal" not in p and "probabilityRange" not in p for p in risk["prediction"])


def test_header_elements_status_subject_time_and_method():
    risk = risk_assessment_of(metastatic_high())
    assert risk["status"] == "final"
    assert risk["subject"] == {"reference": "Patient/esrd-1"}
    assert risk["occurrenceDateTime"] == "2026-11-02T09:30:00Z"
    assert risk["method"]["text"] == "CalcinosisCutis rule library 1.0.0"
    assert "condition" not in risk


def test_basis_is_the_sorted_union_of_all_grades_evidence_without_duplicates():
    risk = risk_assessment_of(metastatic_high())
    assert [b["reference"] for b in risk["basis"]] == ["Condition/esrd", "Observation/ca-1", "Observation/phos-1"]


def test_notes_hold_citations_in_prediction_order_then_the_assessment_notes():
    notes = [n["text"] for n in risk_assessment_of(metastatic_high())["note"]]
    assert notes[0].startswith("metastatic: Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019. Pathophysiology, "
                               "Metastatic Calcification: \"Calcium deposition occurs")
    assert notes[1].startswith("calciphylaxis: Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019. Pearls and Other Issues")
    assert notes[-1] == "Default adult phosphate range applied: the lab gave none."


def test_urn_uuid_patient_reference_is_used_as_is_and_typed():
    risk = risk_assessment_of(no_labs())
    assert risk["subject"] == {"reference": "urn:uuid:f0a1c3d2-0000-4000-8000-000000000001", "type": "Patient"}
    assert "basis" not in risk  # no evidence at all: nothing is made up
    assert all(p["qualitativeRisk"]["coding"][0]["code"] == "low" for p in risk["prediction"])


def test_calcinosis_condition_is_the_assessed_condition():
    risk = risk_assessment_of(dystrophic_with_condition())
    assert risk["condition"] == {"reference": "Condition/calcinosis-7"}
    assert risk["prediction"][0]["outcome"]["coding"][0]["code"] == "dystrophic"


def test_assessed_at_with_an_offset_is_written_in_utc_with_z():
    patient = dataclasses.replace(metastatic_high(),
                                  assessed_at=datetime(2026, 11, 2, 10, 30, tzinfo=timezone(timedelta(hours=1))))
    assert build_risk_assessment(patient)["occurrenceDateTime"] == ASSESSED_AT.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_grade_with_an_unknown_type_is_an_internal_error_not_an_output():
    patient = metastatic_high()
    bad = dataclasses.replace(patient, grades=(dataclasses.replace(patient.grades[0], type="vascular"),))
    with pytest.raises(OutputValidationError, match="vascular"):
        build_result_bundle([bad], [])


def test_a_grade_with_an_unknown_risk_is_an_internal_error_not_an_output():
    patient = metastatic_high()
    bad = dataclasses.replace(patient, grades=(dataclasses.replace(patient.grades[0], risk="certain"),))
    with pytest.raises(OutputValidationError, match="certain"):
        build_result_bundle([bad], [])


def test_an_assessment_without_grades_gives_no_prediction_rather_than_an_invented_one():
    risk = risk_assessment_of(dataclasses.replace(no_labs(), grades=()))
    assert "prediction" not in risk
    assert risk["status"] == "final"


def test_a_cited_prediction_carries_its_citation_as_a_related_artifact_extension():
    risk = risk_assessment_of(metastatic_high())
    metastatic = risk["prediction"][0]
    (extension,) = metastatic["extension"]
    assert extension["url"] == "http://hl7.org/fhir/StructureDefinition/cqf-relatedArtifact"
    artifact = extension["valueRelatedArtifact"]
    assert artifact["type"] == "citation"
    assert artifact["label"] == "Pathophysiology, Metastatic Calcification"
    assert artifact["display"] == 'StatPearls "Calcinosis Cutis" (Le C, Bedocs PM, 2019)'
    assert artifact["citation"].startswith("Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019.")
    assert artifact["url"] == "https://pubmed.ncbi.nlm.nih.gov/28846311/"
    uncited = next(p for p in risk["prediction"] if p["outcome"]["coding"][0]["code"] == "iatrogenic")
    assert "extension" not in uncited
