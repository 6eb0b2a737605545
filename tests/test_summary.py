"""The readable summary `calcinosis-cds assess FILE` prints."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from service.summary import format_summary
from test_outputs_scenarios import BUNDLE_ISSUES, dystrophic_with_condition, metastatic_high, no_labs

SECTIONS = ["Types, most likely first", "Values used", "Recommended tests",
            "Already available (not proposed again)", "Order alerts", "Notes", "Skipped inputs"]


def test_patient_block_has_its_sections_in_reading_order():
    text = format_summary([metastatic_high()], [])
    positions = [text.index(f"\n{title}\n") for title in SECTIONS]
    assert positions == sorted(positions)
    assert text.startswith("Calcinosis cutis assessment: Patient/esrd-1\n")
    assert "Assessed 2026-11-02T09:30:00Z with the CalcinosisCutis rule library 1.0.0." in text


def test_types_are_listed_most_likely_first_with_grade_and_rationale():
    text = format_summary([metastatic_high()], [])
    assert "1. Metastatic calcinosis cutis: high likelihood" in text
    assert "2. Calciphylaxis: moderate likelihood" in text
    assert text.index("Metastatic calcinosis cutis: high") < text.index("Idiopathic calcinosis cutis: negligible")
    assert "Ca x P product 79.5 mg2/dL2 exceeds 70" in " ".join(text.split())
    assert "Source: Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019. Pathophysiology, Metastatic" in " ".join(text.split())


def test_values_used_show_number_unit_flag_date_range_and_source():
    text = format_summary([metastatic_high()], [])
    assert "Calcium (serum): 11.2 mg/dL, flag H, on 2026-10-30T07:15:00Z, range 8.5-10.2 mg/dL (lab)" in text
    assert "Phosphate (serum): 7.1 mg/dL, flag H, on 2026-10-30, range 2.5-4.5 mg/dL (default, adult)" in text
    assert "Creatinine (serum): 6.40 mg/dL" in text  # trailing zero kept as the lab gave it


def test_recommended_tests_are_grouped_and_available_tests_listed():
    text = format_summary([metastatic_high()], [])
    recommended = text[text.index("\nRecommended tests\n"):text.index("\nAlready available")]
    assert recommended.index("Baseline work-up:") < recommended.index("PTH intact (LOINC 2731-8)")
    assert recommended.index("25-hydroxyvitamin D") < recommended.index("Milk-alkali syndrome work-up:")
    assert recommended.index("Milk-alkali syndrome work-up:") < recommended.index("Bicarbonate (LOINC 1963-8)")
    assert "Calcium (serum) (LOINC 17861-6): 11.2 mg/dL on 2026-10-30 from Observation/ca-1" in text


def test_order_alerts_and_skipped_inputs_show_what_and_where():
    text = format_summary([metastatic_high()], [])
    assert "Calcium gluconate 10% IV (MedicationRequest/cagluc-1): Check phosphate first" in text
    assert "warning (value) at Bundle.entry[7].resource.valueQuantity.unit: Unit 'mmol'" in text


def test_no_labs_says_unknown_not_normal_and_lists_the_baseline_panel():
    text = format_summary([no_labs()], [])
    assert "none: no usable lab value (unknown, not normal)" in text
    assert "CBC panel (LOINC 58410-2)" in text
    assert "Order alerts" not in text
    assert "Skipped inputs\n--------------\n  none" in text


def test_condition_on_record_and_snomed_imaging_are_named():
    text = format_summary([dystrophic_with_condition()], [])
    assert "Calcinosis cutis Condition on record: Condition/calcinosis-7." in text
    assert "Plain X-ray (SNOMED CT 168537006)" in text


def test_several_patients_in_order_then_bundle_level_skipped_inputs():
    text = format_summary([metastatic_high(), no_labs()], BUNDLE_ISSUES)
    first = text.index("assessment: Patient/esrd-1")
    second = text.index("assessment: urn:uuid:f0a1c3d2-0000-4000-8000-000000000001")
    bundle_level = text.index("Skipped inputs not tied to a patient")
    assert first < second < bundle_level
    assert "warning (not-supported) at Bundle.entry[12].resource: Resource type Claim" in text


def test_no_patient_is_said_plainly():
    assert format_summary([], []) == "No patient found in the input.\n"


def test_plain_text_within_100_columns_and_no_colour_codes():
    text = format_summary([metastatic_high(), no_labs(), dystrophic_with_condition()], BUNDLE_ISSUES)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "\x1b" not in text


def test_decimal_in_exponent_form_is_printed_in_plain_notation():
    patient = metastatic_high()
    value = dataclasses.replace(patient.values_used[0], value=Decimal("1.12E+1"))
    text = format_summary([dataclasses.replace(patient, values_used=(value,))], [])
    assert "Calcium (serum): 11.2 mg/dL" in text
    assert "E+1" not in text


def test_a_value_without_date_says_the_date_is_unknown():
    patient = metastatic_high()
    value = dataclasses.replace(patient.values_used[0], effective=None)
    text = format_summary([dataclasses.replace(patient, values_used=(value,))], [])
    assert "Calcium (serum): 11.2 mg/dL, flag H, date unknown, range" in text
