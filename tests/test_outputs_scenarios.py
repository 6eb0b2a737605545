"""Realistic assessments built by hand, shared by the output and summary tests.

The scenarios follow the clinical knowledge the rules encode: an ESRD patient with high calcium
and phosphate (metastatic first), a patient with no labs at all (nothing graded high, baseline
proposed), a dermatomyositis patient with a calcinosis Condition and normal labs (dystrophic).
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from fhir.resources.R4B import get_fhir_model_class

from service.assessment_model import (AvailableTest, InputIssue, OrderAlert, PanelTest, PatientAssessment,
                                      TypeGrade, ValueUsed)
from service.bibliography import load_bibliography
from service.fhir_outputs import build_result_bundle

ASSESSED_AT = datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)
LIBRARY = "CalcinosisCutis"
VERSION = "1.0.0"

BASELINE_REASON = "Baseline work-up for calcinosis cutis: rules out kidney failure and hyperparathyroidism"
STATPEARLS = "statpearls-calcinosis-cutis"


def cited(source: str, section: str, quote: str) -> dict:
    """The citation fields of a grade or an alert, rendered from the shipped bibliography as the core does."""
    citation = load_bibliography().citation(source, section, quote)
    return {"citation": citation.text, "citations": (citation,)}


def metastatic_high() -> PatientAssessment:
    """ESRD, calcium 11.2 and phosphate 7.1 mg/dL (Ca x P 79.5): metastatic high, no Condition."""
    return PatientAssessment(
        patient_id="esrd-1",
        patient_reference="Patient/esrd-1",
        assessed_at=ASSESSED_AT,
        library=LIBRARY,
        library_version=VERSION,
        grades=(
            TypeGrade("metastatic", "high",
                      "Calcium 11.2 mg/dL (2026-10-30) and phosphate 7.1 mg/dL (2026-10-30) are high; "
                      "Ca x P product 79.5 mg2/dL2 exceeds 70; end-stage renal disease on record.",
                      evidence=("Observation/ca-1", "Observation/phos-1", "Condition/esrd"),
                      **cited(STATPEARLS, "Pathophysiology, Metastatic Calcification",
                              "Calcium deposition occurs when the calcium phosphate product exceeds 70 mg^2/dL^2.")),
            TypeGrade("calciphylaxis", "moderate",
                      "Dialysis-dependent renal disease with Ca x P 79.5; no skin necrosis recorded.",
                      evidence=("Condition/esrd", "Observation/phos-1"),
                      **cited(STATPEARLS, "Pearls and Other Issues",
                              "It is seen in patients with chronic renal failure and on dialysis but can also occur in "
                              "those with normal kidney functions.")),
            TypeGrade("iatrogenic", "low", "No calcium or phosphate infusion on record."),
            TypeGrade("dystrophic", "negligible",
                      "Calcium and phosphate are abnormal, which argues against dystrophic calcinosis."),
            TypeGrade("idiopathic", "negligible", "Labs are abnormal, so idiopathic calcinosis does not fit."),
        ),
        recommended=(
            PanelTest("2731-8", "http://loinc.org", "PTH intact", "baseline",
                      "Hyperparathyroidism drives metastatic calcinosis; no PTH in the last 90 days."),
            PanelTest("62292-8", "http://loinc.org", "25-hydroxyvitamin D", "baseline",
                      "Hypervitaminosis D drives metastatic calcinosis."),
            PanelTest("1963-8", "http://loinc.org", "Bicarbonate", "milk-alkali",
                      "Milk-alkali syndrome: check bicarbonate."),
        ),
        available=(
            AvailableTest("17861-6", "http://loinc.org", "Calcium (serum)", "11.2 mg/dL on 2026-10-30",
                          "Observation/ca-1"),
            AvailableTest("2777-1", "http://loinc.org", "Phosphate (serum)", "7.1 mg/dL on 2026-10-30",
                          "Observation/phos-1"),
        ),
        values_used=(
            ValueUsed("calcium", "Calcium (serum)", Decimal("11.2"), "mg/dL",
                      datetime(2026, 10, 30, 7, 15, tzinfo=timezone.utc), "Observation/ca-1",
                      flag="H", range_text="8.5-10.2 mg/dL (lab)"),
            ValueUsed("phosphate", "Phosphate (serum)", Decimal("7.1"), "mg/dL", date(2026, 10, 30),
                      "Observation/phos-1", flag="H", range_text="2.5-4.5 mg/dL (default, adult)"),
            ValueUsed("creatinine", "Creatinine (serum)", Decimal("6.40"), "mg/dL", date(2026, 10, 29),
                      "Observation/cr-1", flag="N", range_text="0.6-1.3 mg/dL (lab)"),
        ),
        issues=(
            InputIssue("warning", "value", "Unit 'mmol' is not a concentration; calcium result skipped.",
                       "Bundle.entry[7].resource.valueQuantity.unit"),
        ),
        order_alerts=(
            OrderAlert("MedicationRequest/cagluc-1", "Calcium gluconate 10% IV",
                       "Check phosphate first; dilute and watch the site for extravasation.",
                       **cited(STATPEARLS, "Pathophysiology, Iatrogenic Calcification",
                               "Iatrogenic calcification can be prevented by diluting the calcium solution and lowering "
                               "phosphorus levels before administration.")),
        ),
        notes=("Default adult phosphate range applied: the lab gave none.",),
    )


def no_labs() -> PatientAssessment:
    """No labs at all: unknown, not normal; nothing graded high; baseline panel proposed."""
    return PatientAssessment(
        patient_id="f0a1c3d2-0000-4000-8000-000000000001",
        patient_reference="urn:uuid:f0a1c3d2-0000-4000-8000-000000000001",
        assessed_at=ASSESSED_AT,
        library=LIBRARY,
        library_version=VERSION,
        grades=tuple(TypeGrade(kind, "low", "No calcium or phosphate result: the labs are unknown.")
                     for kind in ("dystrophic", "metastatic", "idiopathic", "iatrogenic", "calciphylaxis")),
        recommended=(
            PanelTest("58410-2", "http://loinc.org", "CBC panel", "baseline", BASELINE_REASON),
            PanelTest("24321-2", "http://loinc.org", "Basic metabolic panel", "baseline", BASELINE_REASON),
            PanelTest("17861-6", "http://loinc.org", "Calcium (serum)", "baseline", BASELINE_REASON),
            PanelTest("2777-1", "http://loinc.org", "Phosphate (serum)", "baseline", BASELINE_REASON),
        ),
    )


def dystrophic_with_condition() -> PatientAssessment:
    """Dermatomyositis and a calcinosis cutis Condition, normal calcium: dystrophic high."""
    return PatientAssessment(
        patient_id="dm-7",
        patient_reference="Patient/dm-7",
        assessed_at=ASSESSED_AT,
        library=LIBRARY,
        library_version=VERSION,
        grades=(
            TypeGrade("dystrophic", "high",
                      "Dermatomyositis on record; calcium 9.4 mg/dL (2026-10-01) is normal.",
                      evidence=("Condition/dm", "Observation/ca-7"),
                      **cited(STATPEARLS, "Pathophysiology, Dystrophic Calcification",
                              "Serum calcium and phosphorus levels are normal.")),
            TypeGrade("idiopathic", "low", "Tissue damage is present, so idiopathic is unlikely."),
            TypeGrade("metastatic", "negligible", "Calcium 9.4 mg/dL is within 8.5-10.2 mg/dL.",
                      evidence=("Observation/ca-7",)),
            TypeGrade("iatrogenic", "negligible", "No iatrogenic cause on record."),
            TypeGrade("calciphylaxis", "negligible", "No renal failure on record."),
        ),
        recommended=(
            PanelTest("2157-6", "http://loinc.org", "Creatine kinase", "myositis",
                      "Dermatomyositis activity."),
            PanelTest("1761-6", "http://loinc.org", "Aldolase", "myositis", "Dermatomyositis activity."),
            PanelTest("168537006", "http://snomed.info/sct", "Plain X-ray", "imaging",
                      "Extent of the deposits."),
        ),
        available=(AvailableTest("17861-6", "http://loinc.org", "Calcium (serum)", "9.4 mg/dL on 2026-10-01",
                                 "Observation/ca-7"),),
        values_used=(ValueUsed("calcium", "Calcium (serum)", Decimal("9.4"), "mg/dL", date(2026, 10, 1),
                               "Observation/ca-7", flag="N", range_text="8.5-10.2 mg/dL (lab)"),),
        calcinosis_condition="Condition/calcinosis-7",
    )


BUNDLE_ISSUES = (
    InputIssue("warning", "not-supported", "Resource type Claim is not read by the rules; skipped.",
               "Bundle.entry[12].resource"),
)

ALL_SCENARIOS = (metastatic_high, no_labs, dystrophic_with_condition)


def validate_r4(resource: dict) -> None:
    """Fails the test when `resource` is not valid FHIR R4 (fhir.resources.R4B)."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def resources_of(bundle: dict, resource_type: str) -> list[dict]:
    return [entry["resource"] for entry in bundle.get("entry", [])
            if entry["resource"]["resourceType"] == resource_type]


@pytest.mark.parametrize("scenario", ALL_SCENARIOS, ids=lambda scenario: scenario.__name__)
def test_each_scenario_alone_gives_a_bundle_that_validates_as_r4(scenario):
    bundle = build_result_bundle([scenario()], [])
    validate_r4(bundle)
    for entry in bundle["entry"]:
        validate_r4(entry["resource"])


def test_all_scenarios_together_with_bundle_issues_validate_as_r4():
    bundle = build_result_bundle([scenario() for scenario in ALL_SCENARIOS], BUNDLE_ISSUES)
    validate_r4(bundle)
    assert len(resources_of(bundle, "RiskAssessment")) == 3
    for entry in bundle["entry"]:
        validate_r4(entry["resource"])
