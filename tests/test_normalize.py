"""Normalization into the facts model: analytes, units, statuses, ranges, ages, other resource types."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.cql_like.quantity import Quantity
from service.cql_like.values import Code, Interval
from service.pipeline.ingest import KeptResource, PatientResources, read_bundle
from service.pipeline.normalize import build_facts

NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)
PATIENT_UUID = "urn:uuid:5a0f6b3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


# --- factories ----------------------------------------------------------------------------------

def patient(birth="1970-04-02"):
    resource = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    if birth is not None:
        resource["birthDate"] = birth
    return resource


def lab(code, value=None, unit=None, *, ucum_code=None, resource_id="o1", status="final",
        effective="2026-10-02T08:30:00Z", **extra):
    resource = {
        "resourceType": "Observation", "id": resource_id, "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": PATIENT_UUID},
    }
    if effective is not None:
        resource["effectiveDateTime"] = effective
    if value is not None:
        quantity = {"value": value}
        if unit is not None:
            quantity["unit"] = unit
        if ucum_code is not None:
            quantity.update(system=UCUM, code=ucum_code)
        resource["valueQuantity"] = quantity
    resource.update(extra)
    return resource


def ucum_lab(code, value, unit, **extra):
    return lab(code, value, unit, ucum_code=unit, **extra)


def facts_of(*resources, birth="1970-04-02", now=NOW):
    entries = [{"fullUrl": PATIENT_UUID, "resource": patient(birth)}]
    entries += [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{n:012d}", "resource": r}
                for n, r in enumerate(resources, start=1)]
    ingested = read_bundle({"resourceType": "Bundle", "type": "collection", "entry": entries})
    assert ingested.issues == ()
    group = ingested.patients[0]
    assert group.issues == (), group.issues
    return build_facts(group, now=now)


def only_observation(facts):
    records = facts.records("Observation")
    assert len(records) == 1, records
    return records[0]


def warnings(facts):
    return [issue for issue in facts.issues if issue.severity == "warning"]


# --- values and units -----------------------------------------------------------------------------

def test_a_calcium_result_becomes_an_observation_record_with_the_models_fields():
    facts = facts_of(ucum_lab("17861-6", 9.4, "mg/dL"))
    record = only_observation(facts)
    assert record.type_name == "Observation"
    assert record.source == "urn:uuid:00000000-0000-4000-8000-000000000001"
    assert record.get("analyte") == "calcium"
    assert record.get("value") == Quantity(Decimal("9.4"), "mg/dL")
    assert record.get("status") == "final" and record.get("category") == "laboratory"
    assert record.get("effective") == datetime(2026, 10, 2, 8, 30, tzinfo=timezone.utc)
    assert record.get("code").codes == (Code("17861-6", LOINC),)
    assert facts.issues == ()


@pytest.mark.parametrize("code, value, unit, analyte, expected, canonical_unit", [
    ("2000-8", 2.5, "mmol/L", "calcium", "10.0", "mg/dL"),
    ("1995-0", 1.2, "mmol/L", "calcium-ionized", "4.8", "mg/dL"),
    ("14879-1", 1.5, "mmol/L", "phosphate", "4.65", "mg/dL"),
    ("14682-9", 120, "umol/L", "creatinine", "1.36", "mg/dL"),
    ("14866-8", 8, "pmol/L", "pth", "75.4", "pg/mL"),
    ("2731-8", 70, "ng/L", "pth", "70", "pg/mL"),
    ("68438-1", 100, "nmol/L", "vitamin-d-25oh", "40.1", "ng/mL"),
    ("1751-7", 38, "g/L", "albumin", "3.8", "g/dL"),
    ("14637-3", 6, "mmol/(24.h)", "urine-calcium-24h", "240", "mg/(24.h)"),
    ("1963-8", 24, "mmol/L", "bicarbonate", "24", "mmol/L"),
    ("2744-1", 7.38, "[pH]", "ph-arterial", "7.38", "[pH]"),
    ("98979-8", 28, "mL/min/{1.73_m2}", "egfr", "28", "mL/min/{1.73_m2}"),
])
def test_si_values_are_converted_to_the_canonical_unit(code, value, unit, analyte, expected, canonical_unit):
    record = only_observation(facts_of(ucum_lab(code, value, unit)))
    assert record.get("analyte") == analyte
    assert record.get("value") == Quantity(Decimal(expected), canonical_unit)


def test_a_unit_spelled_loosely_without_ucum_code_is_understood():
    record = only_observation(facts_of(lab("2160-0", 1.1, "mg/dl")))
    assert record.get("value") == Quantity(Decimal("1.1"), "mg/dL")


def test_bicarbonate_in_meq_per_litre_is_exactly_mmol_per_litre():
    record = only_observation(facts_of(lab("1963-8", 31, "mEq/L")))
    assert record.get("value") == Quantity(Decimal("31"), "mmol/L")


def test_a_unit_given_as_a_snomed_code_falls_back_to_the_unit_text():
    observation = lab("17861-6", 9.0, "mg/dL")
    observation["valueQuantity"].update(system="http://snomed.info/sct", code="258797006")
    record = only_observation(facts_of(observation))
    assert record.get("value") == Quantity(Decimal("9.0"), "mg/dL")


def test_an_unknown_unit_is_a_warning_and_the_value_is_not_used():
    facts = facts_of(ucum_lab("17861-6", 9.4, "mg/g"))
    assert facts.records("Observation") == ()
    (issue,) = facts.issues
    assert issue.severity == "warning"
    assert issue.location == "Bundle.entry[1].resource.valueQuantity.code"
    assert "mg/g" in issue.diagnostics


def test_a_unit_text_that_is_unknown_is_reported_at_the_unit():
    facts = facts_of(lab("17861-6", 9.4, "milligrams-ish"))
    assert facts.records("Observation") == ()
    assert facts.issues[0].location == "Bundle.entry[1].resource.valueQuantity.unit"


def test_calcium_in_meq_per_litre_is_refused_because_calcium_is_divalent():
    facts = facts_of(lab("17861-6", 4.6, "mEq/L"))
    assert facts.records("Observation") == () and len(warnings(facts)) == 1


def test_a_value_string_is_not_parsed_into_a_number():
    observation = lab("2777-1", valueString="4.1")
    facts = facts_of(observation)
    assert facts.records("Observation") == ()
    (issue,) = facts.issues
    assert issue.location == "Bundle.entry[1].resource.valueString"
    assert "'4.1' is not a Quantity" in issue.diagnostics


def test_a_comparator_value_is_kept_as_a_bound_not_an_exact_number():
    # Bounded results are described fully in test_normalize_bounded_and_units.py.
    observation = ucum_lab("62292-8", 5, "ng/mL")
    observation["valueQuantity"]["comparator"] = "<"
    facts = facts_of(observation)
    record = only_observation(facts)
    assert (record.get("value"), record.get("comparator"), record.get("interpretation")) == (
        Quantity(Decimal("5"), "ng/mL"), "<", "L")
    assert facts.issues[0].location == "Bundle.entry[1].resource.valueQuantity.comparator"
    assert "'<5 ng/mL' is a bound, not a measured value" in facts.issues[0].diagnostics


def test_a_quantity_without_value_is_skipped():
    observation = lab("17861-6")
    observation["valueQuantity"] = {"unit": "mg/dL", "system": UCUM, "code": "mg/dL"}
    facts = facts_of(observation)
    assert facts.records("Observation") == ()
    assert facts.issues[0].location == "Bundle.entry[1].resource.valueQuantity.value"


def test_an_observation_with_no_value_at_all_is_skipped_and_the_reason_given():
    observation = lab("2777-1", dataAbsentReason={"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "error",
         "display": "Error"}]})
    facts = facts_of(observation)
    assert facts.records("Observation") == ()
    assert facts.issues[0].location == "Bundle.entry[1].resource"  # no value element to point at
    assert "dataAbsentReason: Error" in facts.issues[0].diagnostics


# --- status and dates -----------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["entered-in-error", "cancelled", "registered", "unknown"])
def test_results_with_a_status_that_does_not_count_are_not_used(status):
    facts = facts_of(ucum_lab("17861-6", 12.5, "mg/dL", status=status))
    assert facts.records("Observation") == ()
    (issue,) = facts.issues
    assert issue.location == "Bundle.entry[1].resource.status"
    assert f"not used: status '{status}'" in issue.diagnostics


@pytest.mark.parametrize("status", ["final", "amended", "corrected"])
def test_final_amended_and_corrected_results_count_silently(status):
    facts = facts_of(ucum_lab("17861-6", 9.0, "mg/dL", status=status))
    assert only_observation(facts).get("status") == status and facts.issues == ()


def test_a_preliminary_result_counts_and_is_noted():
    facts = facts_of(ucum_lab("17861-6", 9.0, "mg/dL", status="preliminary"))
    assert only_observation(facts).get("status") == "preliminary"
    (issue,) = facts.issues
    assert issue.severity == "information" and "preliminary result used" in issue.diagnostics


def test_a_result_without_any_date_cannot_be_current_and_is_skipped():
    facts = facts_of(ucum_lab("17861-6", 9.0, "mg/dL", effective=None))
    assert facts.records("Observation") == ()
    assert "no effective date and no issued date" in facts.issues[0].diagnostics


def test_a_result_dated_only_by_issued_is_filed_under_issued_and_the_clinician_told():
    facts = facts_of(ucum_lab("17861-6", 9.0, "mg/dL", effective=None, issued="2026-10-03T10:00:00.000+02:00"))
    record = only_observation(facts)
    assert record.get("issued") == datetime(2026, 10, 3, 8, 0, tzinfo=timezone.utc)
    assert record.get("effective") == record.get("issued")
    (issue,) = facts.issues
    assert (issue.severity, issue.location) == ("information", "Bundle.entry[1].resource")
    assert "dated by Observation.issued: no effective time was sent" in issue.diagnostics


def test_an_effective_time_that_is_sent_is_not_replaced_by_issued():
    facts = facts_of(ucum_lab("17861-6", 9.0, "mg/dL", effective="2026-10-02T08:30:00Z",
                              issued="2026-10-03T10:00:00Z"))
    assert only_observation(facts).get("effective") == datetime(2026, 10, 2, 8, 30, tzinfo=timezone.utc)
    assert facts.issues == ()


@pytest.mark.parametrize("element, value, expected", [
    ("effectiveDateTime", "2026-10", datetime(2026, 10, 1, tzinfo=timezone.utc)),
    ("effectiveDateTime", "2026", datetime(2026, 1, 1, tzinfo=timezone.utc)),
    ("effectiveDateTime", "2026-10-02", datetime(2026, 10, 2, tzinfo=timezone.utc)),
    ("effectiveInstant", "2026-10-02T07:00:00.123+01:00", datetime(2026, 10, 2, 6, 0, 0, 123000, tzinfo=timezone.utc)),
    ("effectivePeriod", {"start": "2026-10-02T06:00:00Z", "end": "2026-10-03T06:00:00Z"},
     datetime(2026, 10, 2, 6, 0, tzinfo=timezone.utc)),
    ("effectivePeriod", {"end": "2026-10-03T06:00:00Z"}, datetime(2026, 10, 3, 6, 0, tzinfo=timezone.utc)),
])
def test_effective_dates_of_any_form_and_precision(element, value, expected):
    observation = ucum_lab("17861-6", 9.0, "mg/dL", effective=None)
    observation[element] = value
    assert only_observation(facts_of(observation)).get("effective") == expected


def test_a_result_dated_after_the_evaluation_time_is_flagged():
    later = (NOW + timedelta(days=3)).isoformat()
    facts = facts_of(ucum_lab("17861-6", 9.0, "mg/dL", effective=later))
    assert len(facts.records("Observation")) == 1
    assert "after the evaluation time" in facts.issues[0].diagnostics


def test_every_valid_result_is_delivered_with_its_date_the_latest_choice_is_the_rules():
    facts = facts_of(ucum_lab("17861-6", 9.0, "mg/dL", resource_id="old", effective="2020-01-01"),
                     ucum_lab("17861-6", 11.2, "mg/dL", resource_id="new", effective="2026-10-01"))
    assert [record.get("id") for record in facts.records("Observation")] == ["old", "new"]


# --- ranges and interpretation --------------------------------------------------------------------

def test_a_default_range_flags_a_high_adult_calcium():
    record = only_observation(facts_of(ucum_lab("17861-6", 11.3, "mg/dL")))
    assert record.get("referenceRange") == Interval(Quantity(Decimal("8.5"), "mg/dL"),
                                                    Quantity(Decimal("10.2"), "mg/dL"))
    assert record.get("referenceRangeSource") == "default adult"
    assert (record.get("interpretation"), record.get("interpretationSource")) == ("H", "range")


def test_the_labs_reference_range_wins_over_the_default():
    observation = ucum_lab("17861-6", 10.0, "mg/dL", referenceRange=[{
        "low": {"value": 2.10, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
        "high": {"value": 2.45, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}}])
    record = only_observation(facts_of(observation))
    assert record.get("referenceRangeSource") == "lab"
    assert record.get("referenceRange").high == Quantity(Decimal("9.82"), "mg/dL")  # 2.45: 3 digits
    assert record.get("interpretation") == "H"  # the default 8.5-10.2 would have said N


def test_the_labs_interpretation_wins_over_any_range():
    observation = ucum_lab("17861-6", 9.0, "mg/dL", interpretation=[
        {"coding": [{"system": V3, "code": "L", "display": "Low"}]}])
    record = only_observation(facts_of(observation))
    assert (record.get("interpretation"), record.get("interpretationSource")) == ("L", "lab")
    assert record.get("referenceRangeSource") == "default adult"


def test_a_lab_range_in_an_unknown_unit_falls_back_to_the_default_with_a_note():
    observation = ucum_lab("17861-6", 9.0, "mg/dL", referenceRange=[{
        "low": {"value": 8.4, "unit": "mg%"}, "high": {"value": 10.4, "unit": "mg%"}}])
    facts = facts_of(observation)
    record = only_observation(facts)
    assert record.get("referenceRangeSource") == "default adult"
    (issue,) = facts.issues
    assert issue.severity == "information"
    assert issue.location == "Bundle.entry[1].resource.referenceRange[0].low"


def test_a_text_only_lab_range_leaves_the_default_in_place():
    observation = ucum_lab("17861-6", 9.0, "mg/dL", referenceRange=[{"text": "see report"}])
    facts = facts_of(observation)
    assert only_observation(facts).get("referenceRangeSource") == "default adult" and facts.issues == ()


def test_a_childs_phosphate_is_normal_with_the_child_band():
    facts = facts_of(ucum_lab("2777-1", 5.5, "mg/dL"), birth="2018-05-20")
    record = only_observation(facts)
    assert record.get("referenceRangeSource") == "default child 1-12 y (unverified)"
    assert record.get("interpretation") == "N"


def test_the_same_phosphate_is_high_with_the_adult_band():
    record = only_observation(facts_of(ucum_lab("2777-1", 5.5, "mg/dL"), birth="1980-05-20"))
    assert record.get("referenceRangeSource") == "default adult (unverified)"
    assert record.get("interpretation") == "H"


def test_the_band_is_the_age_when_the_sample_was_taken():
    old_result = ucum_lab("2777-1", 5.5, "mg/dL", effective="2010-06-01")
    record = only_observation(facts_of(old_result, birth="2000-05-20"))
    assert record.get("referenceRangeSource") == "default child 1-12 y (unverified)"


AGE_UNKNOWN_SOURCE = "default (age unknown): flagged only outside every age band"


def test_a_childs_phosphate_without_birth_date_is_not_flagged_by_the_adult_band():
    record = only_observation(facts_of(ucum_lab("2777-1", 5.4, "mg/dL"), birth=None))
    assert record.get("referenceRangeSource") == AGE_UNKNOWN_SOURCE
    assert record.get("referenceRange") == Interval(Quantity(Decimal("2.5"), "mg/dL"), Quantity(Decimal("8.2"), "mg/dL"))
    assert record.get("interpretation") is None and record.get("interpretationSource") is None


@pytest.mark.parametrize("code, value, flag", [
    ("2777-1", 8.3, "H"),    # above the newborn band's upper limit, the highest of all
    ("2777-1", 2.4, "L"),    # below the adult band's lower limit, the lowest of all
    ("2777-1", 4.0, None),   # normal for an adult, low for a newborn: unknown, not normal
    ("17861-6", 10.5, None),  # high for an adult, normal for a child
    ("17861-6", 8.6, None),   # normal for an adult, low for a child
    ("17861-6", 9.6, None),   # inside every band, still not called normal without an age
    ("17861-6", 10.9, "H"),
    ("17861-6", 8.4, "L"),
])
def test_without_birth_date_a_range_that_differs_by_age_flags_only_outside_every_band(code, value, flag):
    record = only_observation(facts_of(ucum_lab(code, value, "mg/dL"), birth=None))
    assert record.get("referenceRangeSource") == AGE_UNKNOWN_SOURCE
    assert record.get("interpretation") == flag
    assert record.get("interpretationSource") == ("range" if flag else None)


def test_without_birth_date_a_default_the_same_for_every_age_is_kept():
    record = only_observation(facts_of(ucum_lab("62292-8", 12, "ng/mL"), birth=None))
    assert record.get("referenceRangeSource") == "default any age (unverified)"
    assert record.get("interpretation") == "L"


@pytest.mark.parametrize("value, flag", [(80, "H"), (66, None), (6, "L")])
def test_without_birth_date_pth_is_flagged_only_outside_every_age_band(value, flag):
    # A child's PTH bands (7-68 pg/mL from birth to 17) differ from the adult one (10-65 pg/mL).
    record = only_observation(facts_of(ucum_lab("2731-8", value, "pg/mL"), birth=None))
    assert record.get("referenceRangeSource") == AGE_UNKNOWN_SOURCE
    assert record.get("interpretation") == flag


def test_without_birth_date_a_lab_range_still_wins():
    observation = ucum_lab("2777-1", 5.4, "mg/dL", referenceRange=[
        {"low": {"value": 2.5, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
         "high": {"value": 4.5, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}}])
    facts = facts_of(observation, birth=None)
    record = only_observation(facts)
    assert (record.get("referenceRangeSource"), record.get("interpretation")) == ("lab", "H")
    assert not any(issue.diagnostics.startswith("age unknown") for issue in facts.issues)


def test_unknown_age_issue_says_which_ranges_were_applied():
    facts = facts_of(ucum_lab("2777-1", 5.4, "mg/dL", resource_id="p"),
                     ucum_lab("2731-8", 40, "pg/mL", resource_id="h"),
                     ucum_lab("62292-8", 30, "ng/mL", resource_id="d"),
                     ucum_lab("2777-1", 5.0, "mg/dL", resource_id="p2", effective="2026-09-02T08:30:00Z"),
                     birth=None)
    assert [issue.diagnostics for issue in facts.issues] == [
        "age unknown: Phosphate (as P) flagged only outside every age band of its default range (2.5-8.2 mg/dL); "
        "Parathyroid hormone, intact flagged only outside every age band of its default range (7-68 pg/mL); "
        "25-hydroxyvitamin D (total): default any age (unverified) range applied (>= 20 ng/mL)"]


def test_a_partial_birth_date_is_read_as_the_oldest_possible_age_and_an_ambiguous_band_reported():
    # Born in 2008: on 2026-03-10 the patient is 17 or 18 -> adolescent or adult band.
    facts = facts_of(ucum_lab("2777-1", 5.0, "mg/dL", effective="2026-03-10"), birth="2008")
    record = only_observation(facts)
    assert record.get("referenceRangeSource") == "default adult (unverified)"
    assert facts.patient().get("birthDate") == date(2008, 1, 1)
    ambiguous = [issue for issue in facts.issues if "ambiguous" in issue.diagnostics]
    assert len(ambiguous) == 1 and ambiguous[0].severity == "warning"
    assert ambiguous[0].location == "Bundle.entry[0].resource.birthDate"
    assert "adolescent 13-17 y" in ambiguous[0].diagnostics


def test_a_partial_birth_date_that_settles_the_band_is_only_noted():
    facts = facts_of(ucum_lab("2777-1", 4.0, "mg/dL"), birth="1970-04")
    assert only_observation(facts).get("referenceRangeSource") == "default adult (unverified)"
    assert [issue.severity for issue in facts.issues] == ["information"]


def test_an_analyte_without_a_default_range_has_no_flag_unless_the_lab_gives_one():
    facts = facts_of(ucum_lab("33914-3", 38, "mL/min/{1.73_m2}"))
    record = only_observation(facts)
    assert record.get("referenceRange") is None and record.get("interpretation") is None


# --- qualitative analytes and other observations --------------------------------------------------

def test_a_qualitative_ana_result_is_available_as_text():
    observation = lab("8061-4", valueCodeableConcept={"coding": [
        {"system": "http://snomed.info/sct", "code": "10828004", "display": "Positive"}]},
        interpretation=[{"coding": [{"system": V3, "code": "POS"}]}])
    record = only_observation(facts_of(observation))
    assert (record.get("analyte"), record.get("valueText"), record.get("value")) == ("ana", "Positive", None)
    assert record.get("interpretation") == "POS"


def test_a_titer_given_as_a_ratio_is_text():
    observation = lab("5048-4", valueRatio={"numerator": {"value": 1}, "denominator": {"value": 160}})
    assert only_observation(facts_of(observation)).get("valueText") == "1:160"


def test_a_qualitative_quantity_below_detection_is_kept_as_text():
    observation = lab("5130-0", 10, "[IU]/mL", ucum_code="[IU]/mL")
    observation["valueQuantity"]["comparator"] = "<"
    record = only_observation(facts_of(observation))
    assert record.get("valueText") == "<10 [IU]/mL" and record.get("value") is None


def test_a_qualitative_result_without_any_value_is_skipped():
    facts = facts_of(lab("8061-4"))
    assert facts.records("Observation") == () and len(warnings(facts)) == 1


def test_a_panel_with_member_results_counts():
    panel = lab("24321-2", hasMember=[{"reference": "urn:uuid:00000000-0000-4000-8000-000000000002"}])
    facts = facts_of(panel, ucum_lab("17861-6", 9.1, "mg/dL", resource_id="o2"))
    assert [record.get("analyte") for record in facts.records("Observation")] == ["bmp-panel", "calcium"]


def test_a_panel_reported_through_its_components_counts():
    cbc = lab("58410-2", component=[{
        "code": {"text": "Hemoglobin"},
        "valueQuantity": {"value": 13.2, "unit": "g/dL", "system": UCUM, "code": "g/dL"}}])
    facts = facts_of(cbc)
    assert [record.get("analyte") for record in facts.records("Observation")] == ["cbc-panel"]
    assert facts.issues == ()


def test_observations_outside_the_analyte_table_pass_through_without_issues():
    bmi = {"resourceType": "Observation", "id": "bmi", "status": "final",
           "code": {"coding": [{"system": LOINC, "code": "39156-5", "display": "Body mass index"}]},
           "subject": {"reference": PATIENT_UUID}, "effectiveDateTime": "2026-10-02",
           "valueQuantity": {"value": 33.1, "unit": "kg/m2", "system": UCUM, "code": "kg/m2"}}
    survey = {"resourceType": "Observation", "id": "s", "status": "cancelled",
              "code": {"text": "survey"}, "subject": {"reference": PATIENT_UUID}}
    # A result whose code neither the library nor the terminology reads is counted, not modelled.
    ingested = read_bundle({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": PATIENT_UUID, "resource": patient("1970-04-02")}, {"resource": bmi}, {"resource": survey}]})
    assert [issue.diagnostics for issue in ingested.issues] == ["not assessed (not read by the rules): Observation 1"]
    assert [kept.resource["id"] for kept in ingested.patients[0].resources] == ["s"]
    facts = build_facts(ingested.patients[0], now=NOW)
    assert facts.records("Observation") == ()
    assert facts.issues == ()


# --- other resource types -------------------------------------------------------------------------

def test_conditions_carry_their_status_fields_for_the_rules_to_filter():
    condition = {"resourceType": "Condition", "id": "c1",
                 "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                "code": "resolved"}]},
                 "verificationStatus": {"coding": [{
                     "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}]},
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": "46177005"}], "text": "ESRD"},
                 "subject": {"reference": PATIENT_UUID},
                 "onsetDateTime": "2019-04", "abatementDateTime": "2024-01-05", "recordedDate": "2019-05-01"}
    (record,) = facts_of(condition).records("Condition")
    assert record.get("clinicalStatus") == "resolved" and record.get("verificationStatus") == "refuted"
    assert record.get("onset") == datetime(2019, 4, 1, tzinfo=timezone.utc)
    assert record.get("abatement") == datetime(2024, 1, 5, tzinfo=timezone.utc)
    assert record.get("recorded") == datetime(2019, 5, 1, tzinfo=timezone.utc)
    assert record.get("code").display == "ESRD"


def test_a_medication_request_by_code_gets_a_normalized_name_and_route():
    request = {"resourceType": "MedicationRequest", "id": "mr1", "status": "draft", "intent": "order",
               "subject": {"reference": PATIENT_UUID}, "authoredOn": "2026-11-15T08:00:00Z",
               "medicationCodeableConcept": {"text": "  Calcium   Gluconate 10 %\tInjection "},
               "dosageInstruction": [{"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008",
                                                            "display": "Intravenous route"}]}}]}
    (record,) = facts_of(request).records("MedicationRequest")
    assert record.get("name") == "calcium gluconate 10 % injection"
    assert record.get("route").codes[0].code == "47625008"
    assert (record.get("status"), record.get("intent")) == ("draft", "order")
    assert record.get("code").codes == ()


def test_a_medication_reference_is_resolved_to_the_medications_code_and_name():
    medication = {"resourceType": "Medication", "id": "m1", "code": {"coding": [
        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "855288",
         "display": "Warfarin Sodium 1 MG Oral Tablet"}]}}
    request = {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
               "subject": {"reference": PATIENT_UUID}, "medicationReference": {"reference": "Medication/m1"}}
    facts = facts_of(medication, request)
    (record,) = facts.records("MedicationRequest")
    assert record.get("code").codes == (Code("855288", "http://www.nlm.nih.gov/research/umls/rxnorm"),)
    assert record.get("name") == "warfarin sodium 1 mg oral tablet"
    assert facts.records("Medication") == ()


def test_a_contained_medication_is_resolved():
    administration = {
        "resourceType": "MedicationAdministration", "id": "ma1", "status": "completed",
        "contained": [{"resourceType": "Medication", "id": "med", "code": {"text": "Calcium chloride 10%"}}],
        "medicationReference": {"reference": "#med"}, "subject": {"reference": PATIENT_UUID},
        "effectivePeriod": {"start": "2026-11-01T10:00:00Z"},
        "dosage": {"route": {"text": "IV"}}}
    (record,) = facts_of(administration).records("MedicationAdministration")
    assert record.get("name") == "calcium chloride 10%"
    assert record.get("effective") == datetime(2026, 11, 1, 10, tzinfo=timezone.utc)
    assert record.get("route").display == "IV"


def test_medication_statements_procedures_and_service_requests():
    statement = {"resourceType": "MedicationStatement", "id": "ms1", "status": "active",
                 "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                           "code": "11289", "display": "Warfarin"}]},
                 "subject": {"reference": PATIENT_UUID}, "effectiveDateTime": "2025-01-01"}
    procedure = {"resourceType": "Procedure", "id": "pr1", "status": "completed",
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": "302497006"}]},
                 "subject": {"reference": PATIENT_UUID},
                 "performedPeriod": {"start": "2026-09-01T07:00:00Z", "end": "2026-09-01T11:00:00Z"}}
    order = {"resourceType": "ServiceRequest", "id": "sr1", "status": "active", "intent": "order",
             "code": {"coding": [{"system": LOINC, "code": "2777-1"}]},
             "subject": {"reference": PATIENT_UUID}, "authoredOn": "2026-11-10"}
    facts = facts_of(statement, procedure, order)
    (ms,) = facts.records("MedicationStatement")
    assert ms.get("name") == "warfarin" and ms.get("effective") == datetime(2025, 1, 1, tzinfo=timezone.utc)
    (pr,) = facts.records("Procedure")
    assert pr.get("performed") == datetime(2026, 9, 1, 7, tzinfo=timezone.utc) and pr.get("status") == "completed"
    (sr,) = facts.records("ServiceRequest")
    assert (sr.get("status"), sr.get("intent")) == ("active", "order")
    assert sr.get("authoredOn") == datetime(2026, 11, 10, tzinfo=timezone.utc)


# --- the data provider ----------------------------------------------------------------------------

def test_retrieve_by_codes_returns_matching_records_in_bundle_order():
    facts = facts_of(ucum_lab("17861-6", 9.1, "mg/dL", resource_id="a"),
                     ucum_lab("2777-1", 3.9, "mg/dL", resource_id="b"),
                     ucum_lab("2000-8", 2.3, "mmol/L", resource_id="c", effective="2026-10-03T08:30:00Z"))
    calcium_codes = frozenset({Code("17861-6", LOINC), Code("2000-8", LOINC), Code("49765-1", LOINC)})
    assert [r.get("id") for r in facts.retrieve("Observation", calcium_codes)] == ["a", "c"]
    assert [r.get("id") for r in facts.retrieve("Observation", None)] == ["a", "b", "c"]
    assert facts.retrieve("Observation", frozenset({Code("17861-6", "http://example.org")})) == ()
    assert facts.retrieve("Condition", calcium_codes) == ()
    assert facts.retrieve("Encounter", None) == ()


def test_the_context_patient_and_identity():
    facts = facts_of()
    record = facts.patient()
    assert record.fields == {"id": "p1", "birthDate": date(1970, 4, 2), "gender": "female"}
    assert record.source == PATIENT_UUID
    assert (facts.patient_id, facts.patient_reference) == ("p1", PATIENT_UUID)
    assert facts.records("Patient") == (record,)


def test_a_patient_known_only_by_reference_has_unknown_birth_date():
    observation = ucum_lab("2777-1", 4.0, "mg/dL", subject={"reference": "Patient/ext"})
    ingested = read_bundle({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": observation}]})
    facts = build_facts(ingested.patients[0], now=NOW)
    assert facts.patient().fields == {"id": "ext", "birthDate": None, "gender": None}
    assert only_observation(facts).get("referenceRangeSource") == AGE_UNKNOWN_SOURCE
    assert any("age unknown" in issue.diagnostics for issue in facts.issues)


# --- anything at all ------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
    | st.sampled_from(["final", "mg/dL", "2026-10", "17861-6", LOINC, UCUM, "#m", "Medication/m"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["system", "code", "unit", "value", "comparator", "reference", "coding", "text",
                         "start", "end", "low", "high", "route", "id", "resourceType"]), children, max_size=4),
    max_leaves=16,
)
_fields = st.sampled_from([
    "status", "code", "valueQuantity", "valueString", "valueCodeableConcept", "valueRatio", "effectiveDateTime",
    "effectivePeriod", "issued", "referenceRange", "interpretation", "category", "hasMember", "clinicalStatus",
    "onsetDateTime", "medicationReference", "medicationCodeableConcept", "contained", "dosageInstruction",
    "dosage", "performedPeriod", "authoredOn", "dataAbsentReason"])
_types = st.sampled_from(["Observation", "Condition", "MedicationRequest", "MedicationAdministration",
                          "MedicationStatement", "Procedure", "ServiceRequest", "Medication"])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(_types, st.dictionaries(_fields, _json, max_size=6)), max_size=5),
       st.dictionaries(st.sampled_from(["id", "birthDate", "gender"]), _json, max_size=3))
def test_build_facts_never_raises_on_unvalidated_json(resources, patient_json):
    kept = tuple(KeptResource(kind, dict(body, resourceType=kind), n, f"{kind}/{n}")
                 for n, (kind, body) in enumerate(resources))
    group = PatientResources("p", "Patient/p", dict(patient_json, resourceType="Patient"), kept)
    facts = build_facts(group, now=NOW)
    for record in facts.records("Observation"):
        value = record.get("value")
        assert value is None or isinstance(value, Quantity)


def test_a_flood_of_unusable_results_yields_a_bounded_issue_list():
    results = [ucum_lab("17861-6", 9.0, "mg/dL", resource_id=f"e{n}", status="entered-in-error") for n in range(520)]
    facts = facts_of(*results)
    assert len(facts.issues) == 501
    assert "20 further issues" in facts.issues[-1].diagnostics


def test_a_date_that_validates_but_cannot_be_read_is_reported_not_guessed():
    observation = ucum_lab("17861-6", 9.0, "mg/dL", effective="2026-10-02T08:30:60Z", issued="2026-10-02T09:00:00Z")
    facts = facts_of(observation)
    record = only_observation(facts)
    assert record.get("effective") is None
    assert record.get("issued") == datetime(2026, 10, 2, 9, 0, tzinfo=timezone.utc)
    assert facts.issues[0].location == "Bundle.entry[1].resource.effectiveDateTime"


# --- lab reference ranges restricted by age or sex ------------------------------------------------

def _quantity(value, unit="mg/dL"):
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _age(low=None, high=None, unit="a"):
    age = {}
    if low is not None:
        age["low"] = _quantity(low, unit)
    if high is not None:
        age["high"] = _quantity(high, unit)
    return age


def _sex(code, system="http://snomed.info/sct"):
    return [{"coding": [{"system": system, "code": code}]}]


def facts_for(patient_json, *resources):
    entries = [{"fullUrl": PATIENT_UUID, "resource": patient_json}]
    entries += [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{n:012d}", "resource": r}
                for n, r in enumerate(resources, start=1)]
    ingested = read_bundle({"resourceType": "Bundle", "type": "collection", "entry": entries})
    return build_facts(ingested.patients[0], now=NOW)


CHILD_AND_ADULT_PHOSPHATE = [
    {"low": _quantity(4.0), "high": _quantity(7.0), "age": _age(1, 12), "text": "child"},
    {"low": _quantity(2.5), "high": _quantity(4.5), "age": _age(18), "text": "adult"},
]


def test_a_lab_range_for_children_is_not_applied_to_an_adult():
    facts = facts_of(ucum_lab("2777-1", 6.0, "mg/dL", referenceRange=CHILD_AND_ADULT_PHOSPHATE))
    record = only_observation(facts)
    assert record.get("referenceRangeSource") == "lab"
    assert record.get("referenceRange") == Interval(Quantity(Decimal("2.5"), "mg/dL"), Quantity(Decimal("4.5"), "mg/dL"))
    assert record.get("interpretation") == "H"


def test_a_lab_range_for_children_applies_to_a_child_at_the_sample_date():
    facts = facts_of(ucum_lab("2777-1", 6.0, "mg/dL", referenceRange=CHILD_AND_ADULT_PHOSPHATE), birth="2018-06-01")
    record = only_observation(facts)
    assert record.get("referenceRange").high == Quantity(Decimal("7.0"), "mg/dL")
    assert record.get("interpretation") == "N"


def test_an_age_range_in_months_weeks_or_days_is_compared_in_that_unit():
    infant = [{"low": _quantity(4.5), "high": _quantity(7.5), "age": _age(1, 11, unit="mo")}]
    facts = facts_of(ucum_lab("2777-1", 7.0, "mg/dL", effective="2026-10-02", referenceRange=infant),
                     birth="2026-03-01")
    assert only_observation(facts).get("referenceRangeSource") == "lab"
    newborn = [{"low": _quantity(4.8), "high": _quantity(8.2), "age": _age(0, 27, unit="d")}]
    facts = facts_of(ucum_lab("2777-1", 7.0, "mg/dL", effective="2026-10-02", referenceRange=newborn),
                     birth="2026-03-01")
    assert only_observation(facts).get("referenceRangeSource") != "lab"


def test_no_applicable_lab_range_falls_back_to_the_default_band_and_says_so():
    child_only = [CHILD_AND_ADULT_PHOSPHATE[0]]
    facts = facts_of(ucum_lab("2777-1", 6.0, "mg/dL", referenceRange=child_only))
    assert only_observation(facts).get("referenceRangeSource") == "default adult (unverified)"
    (issue,) = facts.issues
    assert (issue.severity, issue.location) == ("information", "Bundle.entry[1].resource.referenceRange")
    assert "the lab's reference ranges do not apply to this patient" in issue.diagnostics


def test_an_age_restricted_range_is_not_used_when_the_age_is_unknown():
    facts = facts_of(ucum_lab("2777-1", 6.0, "mg/dL", referenceRange=[CHILD_AND_ADULT_PHOSPHATE[1]]), birth=None)
    assert only_observation(facts).get("referenceRangeSource") == AGE_UNKNOWN_SOURCE
    assert any("do not apply" in issue.diagnostics for issue in facts.issues)


def test_an_age_restricted_range_is_not_used_when_a_partial_birth_date_straddles_its_edge():
    # Born in 2008: on 2026-03-10 17 or 18 years old; the adult (18 a and over) range cannot be confirmed.
    facts = facts_of(ucum_lab("2777-1", 4.0, "mg/dL", effective="2026-03-10",
                              referenceRange=[CHILD_AND_ADULT_PHOSPHATE[1]]), birth="2008")
    assert only_observation(facts).get("referenceRangeSource") != "lab"


@pytest.mark.parametrize("applies_to", [
    _sex("248152002"),
    _sex("female", "http://hl7.org/fhir/administrative-gender"),
    [{"text": "Female"}],
])
def test_a_range_for_the_patients_sex_is_chosen_over_one_for_the_other_sex(applies_to):
    ranges = [{"low": _quantity(8.0), "high": _quantity(9.0), "appliesTo": _sex("248153007")},
              {"low": _quantity(8.5), "high": _quantity(10.5), "appliesTo": applies_to}]
    record = only_observation(facts_of(ucum_lab("17861-6", 10.0, "mg/dL", referenceRange=ranges)))
    assert record.get("referenceRange").high == Quantity(Decimal("10.5"), "mg/dL")
    assert record.get("interpretation") == "N"


@pytest.mark.parametrize("gender", [None, "unknown", "other"])
def test_a_sex_restricted_range_is_not_used_when_the_sex_is_not_known(gender):
    resource = patient()
    resource.pop("gender")
    if gender is not None:
        resource["gender"] = gender
    ranges = [{"low": _quantity(8.0), "high": _quantity(9.0), "appliesTo": _sex("248152002")}]
    facts = facts_for(resource, ucum_lab("17861-6", 9.5, "mg/dL", referenceRange=ranges))
    assert only_observation(facts).get("referenceRangeSource") == "default adult"


def test_a_range_restricted_to_something_that_cannot_be_checked_is_not_used():
    pregnancy = [{"low": _quantity(8.0), "high": _quantity(9.0), "appliesTo": _sex("77386006")}]
    facts = facts_of(ucum_lab("17861-6", 9.5, "mg/dL", referenceRange=pregnancy))
    assert only_observation(facts).get("referenceRangeSource") == "default adult"


def test_only_normal_ranges_are_considered():
    ranges = [{"low": _quantity(7.0), "high": _quantity(12.0), "type": {"coding": [
                  {"system": "http://terminology.hl7.org/CodeSystem/referencerange-meaning", "code": "treatment"}]}},
              {"low": _quantity(8.6), "high": _quantity(10.3), "type": {"coding": [
                  {"system": "http://terminology.hl7.org/CodeSystem/referencerange-meaning", "code": "normal"}]}}]
    record = only_observation(facts_of(ucum_lab("17861-6", 10.25, "mg/dL", referenceRange=ranges)))
    assert record.get("referenceRange").high == Quantity(Decimal("10.3"), "mg/dL")


def test_the_first_applicable_range_wins():
    ranges = [{"low": _quantity(8.6), "high": _quantity(10.3)}, {"low": _quantity(8.0), "high": _quantity(9.0)}]
    record = only_observation(facts_of(ucum_lab("17861-6", 9.5, "mg/dL", referenceRange=ranges)))
    assert record.get("interpretation") == "N"


# --- converted values keep the measurement's precision -------------------------------------------

@pytest.mark.parametrize("si_value, expected", [(2.55, "10.2"), (2.12, "8.50"), (3.1, "12.4"), (2.375, "9.519")])
def test_a_converted_value_is_rounded_to_the_significant_digits_sent(si_value, expected):
    record = only_observation(facts_of(ucum_lab("2000-8", si_value, "mmol/L")))
    assert record.get("value") == Quantity(Decimal(expected), "mg/dL")


def test_a_lab_range_in_si_units_is_rounded_like_the_value():
    ranges = [{"low": _quantity(2.12, "mmol/L"), "high": _quantity(2.55, "mmol/L")}]
    record = only_observation(facts_of(ucum_lab("2000-8", 2.55, "mmol/L", referenceRange=ranges)))
    assert record.get("referenceRange") == Interval(Quantity(Decimal("8.50"), "mg/dL"),
                                                    Quantity(Decimal("10.2"), "mg/dL"))
    assert record.get("interpretation") == "N"


@pytest.mark.parametrize("si_value, conventional", [(2.55, 10.2), (2.12, 8.5)])
def test_si_and_conventional_calcium_at_the_range_edges_get_the_same_assessment(si_value, conventional):
    from service.pipeline.assess import assess_bundle

    def assessed(value, unit):
        run = assess_bundle({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": PATIENT_UUID, "resource": patient()},
            {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
             "resource": ucum_lab("17861-6" if unit == "mg/dL" else "2000-8", value, unit)},
            {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000002",
             "resource": ucum_lab("2777-1", 3.5, "mg/dL", resource_id="p")}]}, now=NOW)
        (assessment,) = run.patients
        (calcium,) = [value for value in assessment.values_used if value.analyte == "calcium"]
        return calcium.value, calcium.flag, [(grade.type, grade.risk) for grade in assessment.grades]

    si, conventional_result = assessed(si_value, "mmol/L"), assessed(conventional, "mg/dL")
    assert si[0] == conventional_result[0]
    assert si[1] == conventional_result[1] == "N"
    assert si[2] == conventional_result[2]


# --- dates and where issues point ------------------------------------------------------------------

def test_a_result_dated_only_by_issued_is_used_by_the_rules():
    from service.pipeline.assess import assess_bundle

    observation = ucum_lab("17861-6", 12.5, "mg/dL", effective=None, issued="2026-11-01T10:00:00Z")
    run = assess_bundle({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": PATIENT_UUID, "resource": patient()},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001", "resource": observation}]}, now=NOW)
    (assessment,) = run.patients
    assert [(value.analyte, value.value, value.flag) for value in assessment.values_used
            if value.analyte == "calcium"] == [("calcium", Decimal("12.5"), "H")]
    assert any("dated by Observation.issued" in issue.diagnostics for issue in assessment.issues)


def test_a_result_without_any_date_is_reported_at_the_resource_not_at_a_choice_element():
    facts = facts_of(ucum_lab("17861-6", 9.0, "mg/dL", effective=None))
    assert facts.issues[0].location == "Bundle.entry[1].resource"


@pytest.mark.parametrize("element, value", [
    ("effectiveDateTime", "2026-11-20T08:00:00Z"),
    ("effectiveInstant", "2026-11-20T08:00:00Z"),
    ("effectivePeriod", {"start": "2026-11-20T08:00:00Z"}),
    ("issued", "2026-11-20T08:00:00Z"),
])
def test_a_future_date_is_reported_at_the_element_it_came_from(element, value):
    observation = ucum_lab("17861-6", 9.0, "mg/dL", effective=None)
    observation[element] = value
    facts = facts_of(observation)
    future = [issue for issue in facts.issues if "after the evaluation time" in issue.diagnostics]
    suffix = "effectivePeriod.start" if element == "effectivePeriod" else element
    assert [issue.location for issue in future] == [f"Bundle.entry[1].resource.{suffix}"]


def test_a_result_taken_before_birth_is_reported_at_its_date_element():
    facts = facts_of(ucum_lab("17861-6", 9.0, "mg/dL", effective="2001-01-01"), birth="2010-01-01")
    (issue,) = [issue for issue in facts.issues if "before the patient's birthDate" in issue.diagnostics]
    assert issue.location == "Bundle.entry[1].resource.effectiveDateTime"


def test_a_result_taken_before_birth_is_flagged_only_outside_every_age_band():
    facts = facts_of(ucum_lab("2777-1", 5.4, "mg/dL", effective="2001-01-01"), birth="2010-01-01")
    record = only_observation(facts)
    assert (record.get("referenceRangeSource"), record.get("interpretation")) == (AGE_UNKNOWN_SOURCE, None)
    (issue,) = [issue for issue in facts.issues if "before the patient's birthDate" in issue.diagnostics]
    assert issue.diagnostics.endswith("flagged only outside every age band of the default range")


def test_age_unknown_points_at_the_patient_entry_when_it_has_no_birth_date():
    facts = facts_of(ucum_lab("2777-1", 5.5, "mg/dL"), birth=None)
    (issue,) = [issue for issue in facts.issues if issue.diagnostics.startswith("age unknown")]
    assert issue.location == "Bundle.entry[0].resource"


def test_age_unknown_points_at_the_bundle_entries_when_there_is_no_patient():
    observation = ucum_lab("2777-1", 4.0, "mg/dL", subject={"reference": "Patient/ext"})
    ingested = read_bundle({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": observation}]})
    facts = build_facts(ingested.patients[0], now=NOW)
    (issue,) = [issue for issue in facts.issues if issue.diagnostics.startswith("age unknown")]
    assert issue.location == "Bundle.entry"


@pytest.mark.parametrize("element, value", [
    ("valueString", "9.5"), ("valueCodeableConcept", {"text": "high"}), ("valueInteger", 9)])
def test_a_value_of_the_wrong_kind_is_reported_at_the_element_sent(element, value):
    observation = lab("17861-6", **{element: value})
    facts = facts_of(observation)
    assert facts.issues[0].location == f"Bundle.entry[1].resource.{element}"
    assert all("[x]" not in (issue.location or "") for issue in facts.issues)


# --- results filed at the same instant ------------------------------------------------------------

SAME_INSTANT = "2026-11-01T10:00:00Z"


def test_an_amended_result_is_ordered_before_the_final_one_at_the_same_instant_whatever_the_bundle_order():
    final = ucum_lab("17861-6", 12.5, "mg/dL", resource_id="final", effective=SAME_INSTANT,
                     issued="2026-11-01T12:00:00Z")
    amended = ucum_lab("17861-6", 9.5, "mg/dL", resource_id="amended", status="amended", effective=SAME_INSTANT,
                       issued="2026-11-03T12:00:00Z")
    for order in ((final, amended), (amended, final)):
        facts = facts_of(*order)
        assert [record.get("id") for record in facts.records("Observation")] == ["amended", "final"]
        codes = frozenset({Code("17861-6", LOINC)})
        assert [record.get("id") for record in facts.retrieve("Observation", codes)] == ["amended", "final"]


def test_the_later_issued_of_two_final_results_at_the_same_instant_comes_first():
    early = ucum_lab("17861-6", 9.5, "mg/dL", resource_id="early", effective=SAME_INSTANT,
                     issued="2026-11-01T11:00:00Z")
    late = ucum_lab("17861-6", 9.9, "mg/dL", resource_id="late", effective=SAME_INSTANT,
                    issued="2026-11-01T13:00:00+02:00")  # the same instant as early's: the higher value first
    later = ucum_lab("17861-6", 9.7, "mg/dL", resource_id="later", effective=SAME_INSTANT,
                     issued="2026-11-01T12:00:00Z")
    facts = facts_of(later, early, late)
    assert [record.get("id") for record in facts.records("Observation")] == ["later", "late", "early"]


def test_results_at_different_instants_keep_bundle_order():
    facts = facts_of(ucum_lab("17861-6", 9.0, "mg/dL", resource_id="b", effective="2026-10-02", status="amended"),
                     ucum_lab("17861-6", 9.1, "mg/dL", resource_id="a", effective="2026-10-01"))
    assert [record.get("id") for record in facts.records("Observation")] == ["b", "a"]


def test_two_results_at_the_same_instant_that_disagree_are_both_kept_and_reported():
    facts = facts_of(ucum_lab("17861-6", 12.5, "mg/dL", resource_id="x", effective=SAME_INSTANT),
                     ucum_lab("2000-8", 2.37, "mmol/L", resource_id="y", effective=SAME_INSTANT))
    assert len(facts.records("Observation")) == 2
    (issue,) = facts.issues
    assert (issue.severity, issue.code, issue.location) == ("warning", "conflict", "Bundle.entry[1].resource")
    assert "Bundle.entry[1].resource" in issue.diagnostics and "Bundle.entry[2].resource" in issue.diagnostics


def test_two_results_at_the_same_instant_that_agree_are_not_reported():
    facts = facts_of(ucum_lab("17861-6", 9.5, "mg/dL", resource_id="x", effective=SAME_INSTANT),
                     ucum_lab("17861-6", 9.50, "mg/dL", resource_id="y", effective=SAME_INSTANT))
    assert facts.issues == ()


# --- results inside other results -------------------------------------------------------------------

def test_calcium_sent_as_a_component_of_a_panel_is_reported_not_used():
    bmp = lab("51990-0", component=[
        {"code": {"coding": [{"system": LOINC, "code": "2345-7"}]},
         "valueQuantity": {"value": 95, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}},
        {"code": {"coding": [{"system": LOINC, "code": "17861-6"}]},
         "valueQuantity": {"value": 13.0, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}}])
    facts = facts_of(bmp)
    assert all(record.get("analyte") != "calcium" for record in facts.records("Observation"))
    (issue,) = facts.issues
    assert (issue.severity, issue.location) == ("warning", "Bundle.entry[1].resource.component[1]")
    assert "sent as a component of a panel is not used: send it as its own Observation" in issue.diagnostics


# --- one-sided and inverted reference ranges --------------------------------------------------------

def _bound(value, unit="mg/dL"):
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def test_a_lab_range_with_only_a_low_bound_flags_a_value_below_it_as_low():
    record = only_observation(facts_of(ucum_lab("17861-6", 8.0, "mg/dL", referenceRange=[{"low": _bound(8.5)}])))
    assert (record.get("interpretation"), record.get("interpretationSource")) == ("L", "range")


def test_a_lab_range_with_only_a_low_bound_gives_no_flag_above_it_rather_than_normal():
    record = only_observation(facts_of(ucum_lab("17861-6", 14.0, "mg/dL", referenceRange=[{"low": _bound(8.5)}])))
    assert record.get("referenceRangeSource") == "lab"
    assert record.get("referenceRange") == Interval(Quantity(Decimal("8.5"), "mg/dL"), None)
    assert (record.get("interpretation"), record.get("interpretationSource")) == (None, None)


def test_a_lab_range_with_only_a_high_bound_flags_above_it_and_gives_no_flag_below_it():
    high = only_observation(facts_of(ucum_lab("17861-6", 11.0, "mg/dL", referenceRange=[{"high": _bound(10.2)}])))
    low = only_observation(facts_of(ucum_lab("17861-6", 5.0, "mg/dL", referenceRange=[{"high": _bound(10.2)}])))
    assert high.get("interpretation") == "H"
    assert low.get("interpretation") is None


def test_vitamin_d_far_above_the_default_low_bound_gets_no_flag_because_the_default_has_no_upper_limit():
    record = only_observation(facts_of(ucum_lab("62292-8", 180, "ng/mL")))
    assert record.get("referenceRange").high is None
    assert record.get("interpretation") is None


def test_vitamin_d_below_the_default_low_bound_is_flagged_low():
    assert only_observation(facts_of(ucum_lab("62292-8", 12, "ng/mL"))).get("interpretation") == "L"


def test_an_inverted_lab_range_is_not_used_the_default_band_applies_and_a_warning_points_at_it():
    facts = facts_of(ucum_lab("17861-6", 9.0, "mg/dL", referenceRange=[{"low": _bound(10.2), "high": _bound(8.5)}]))
    record = only_observation(facts)
    assert record.get("referenceRangeSource") == "default adult"
    assert record.get("interpretation") == "N"
    (issue,) = warnings(facts)
    assert issue.location == "Bundle.entry[1].resource.referenceRange[0]"
    assert "above high" in issue.diagnostics


# --- results at the same instant that disagree: the conservative one counts --------------------------------

def test_at_the_same_instant_the_abnormal_of_two_conflicting_calcium_results_counts_whatever_the_bundle_order():
    for first, second in ((9.0, 11.5), (11.5, 9.0)):
        facts = facts_of(ucum_lab("17861-6", first, "mg/dL", resource_id=f"r{first}".replace(".", "-"),
                                  effective=SAME_INSTANT),
                         ucum_lab("17861-6", second, "mg/dL", resource_id=f"r{second}".replace(".", "-"),
                                  effective=SAME_INSTANT))
        records = facts.retrieve("Observation", frozenset({Code("17861-6", LOINC)}))
        assert [r.get("value").value for r in records] == [Decimal("11.5"), Decimal("9.0")]
        (issue,) = facts.issues
        assert issue.code == "conflict"
        assert "conflicting results at the same time: the abnormal one (11.5 mg/dL, H) is used" in issue.diagnostics
        assert "issued" not in issue.diagnostics and "amended" not in issue.diagnostics


def test_at_the_same_instant_the_lower_of_two_low_calcium_results_counts():
    facts = facts_of(ucum_lab("17861-6", 7.9, "mg/dL", resource_id="a", effective=SAME_INSTANT),
                     ucum_lab("17861-6", 7.1, "mg/dL", resource_id="b", effective=SAME_INSTANT))
    assert [r.get("id") for r in facts.records("Observation")] == ["b", "a"]
    (issue,) = facts.issues
    assert "the lower one (7.1 mg/dL, L) is used" in issue.diagnostics


def test_a_later_issued_result_at_the_same_instant_counts_even_when_normal_and_the_warning_says_so():
    facts = facts_of(ucum_lab("17861-6", 11.5, "mg/dL", resource_id="a", effective=SAME_INSTANT,
                              issued="2026-11-01T11:00:00Z"),
                     ucum_lab("17861-6", 9.0, "mg/dL", resource_id="b", effective=SAME_INSTANT,
                              issued="2026-11-01T12:00:00Z"))
    assert [r.get("id") for r in facts.records("Observation")] == ["b", "a"]
    (issue,) = facts.issues
    assert "the later issued one (9 mg/dL, N) is used" in issue.diagnostics


# --- unit and UCUM code that contradict each other -------------------------------------------------

def test_a_value_whose_unit_and_ucum_code_name_different_units_is_not_used_and_both_are_named():
    facts = facts_of(lab("17861-6", 2.4, "mmol/L", ucum_code="mg/dL"))
    assert facts.records("Observation") == ()
    (issue,) = warnings(facts)
    assert issue.location == "Bundle.entry[1].resource.valueQuantity"
    assert "'mmol/L'" in issue.diagnostics and "'mg/dL'" in issue.diagnostics


def test_a_unit_spelled_differently_from_its_ucum_code_but_meaning_the_same_is_used():
    record = only_observation(facts_of(lab("17861-6", 9.4, "mg/dl", ucum_code="mg/dL")))
    assert record.get("value") == Quantity(Decimal("9.4"), "mg/dL")


def test_a_range_bound_whose_unit_and_ucum_code_disagree_is_not_used_and_the_default_applies():
    bound = {"value": 2.6, "unit": "mmol/L", "system": UCUM, "code": "mg/dL"}
    facts = facts_of(ucum_lab("17861-6", 9.0, "mg/dL", referenceRange=[{"low": bound, "high": _bound(10.2)}]))
    assert only_observation(facts).get("referenceRangeSource") == "default adult"
    (issue,) = warnings(facts)
    assert issue.location == "Bundle.entry[1].resource.referenceRange[0].low"
    assert "'mmol/L'" in issue.diagnostics and "'mg/dL'" in issue.diagnostics


# --- partial dates ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("sent", "precision", "day"), [("2026-10", "month", "2026-10-01"),
                                                        ("2026", "year", "2026-01-01")])
def test_a_result_dated_to_a_month_or_year_is_ordered_at_its_start_and_the_precision_is_reported(sent, precision, day):
    facts = facts_of(ucum_lab("17861-6", 9.0, "mg/dL", effective=sent))
    assert only_observation(facts).get("effective") == datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    (issue,) = facts.issues
    assert (issue.severity, issue.location) == ("information", "Bundle.entry[1].resource.effectiveDateTime")
    assert issue.diagnostics == f"date '{sent}' has {precision} precision: treated as {day} for ordering"


# --- code systems -------------------------------------------------------------------------------------

def test_calcium_coded_with_the_loinc_oid_is_used_as_loinc_and_the_oid_is_reported():
    observation = ucum_lab("17861-6", 11.0, "mg/dL")
    observation["code"]["coding"][0]["system"] = "urn:oid:2.16.840.1.113883.6.1"
    facts = facts_of(observation)
    (record,) = facts.retrieve("Observation", frozenset({Code("17861-6", LOINC)}))
    assert record.get("analyte") == "calcium"
    (issue,) = facts.issues
    assert (issue.severity, issue.location) == ("information", "Bundle.entry[1].resource.code.coding[0]")
    assert "LOINC identified by its OID; R4 expects http://loinc.org" in issue.diagnostics


def test_an_observation_coded_only_in_an_unknown_local_system_is_reported_as_not_recognised():
    observation = ucum_lab("17861-6", 11.0, "mg/dL")
    observation["code"]["coding"][0]["system"] = "http://lab.example.org/codes"
    facts = facts_of(observation)
    assert only_observation(facts).get("analyte") is None
    (issue,) = facts.issues
    assert (issue.severity, issue.location) == ("information", "Bundle.entry[1].resource.code")
    assert issue.diagnostics == "code not recognised: not used by the rules"


def test_an_unrelated_loinc_observation_is_not_reported():
    ingested = read_bundle({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": PATIENT_UUID, "resource": patient("1970-04-02")}, {"resource": ucum_lab("29463-7", 70, "kg")}]})
    # Only counted among what the rules do not read: no warning, no note about its code.
    assert [issue.diagnostics for issue in ingested.issues] == ["not assessed (not read by the rules): Observation 1"]
    assert ingested.patients[0].resources == () and ingested.patients[0].issues == ()
    assert build_facts(ingested.patients[0], now=NOW).issues == ()


# --- very long text -----------------------------------------------------------------------------------

def test_a_very_long_code_text_is_cut_to_1000_characters_and_reported_at_the_element():
    observation = ucum_lab("17861-6", 9.0, "mg/dL")
    observation["code"]["text"] = "Calcium " * 20_000
    observation["code"]["coding"][0]["display"] = "x" * 5_000
    facts = facts_of(observation)
    record = only_observation(facts)
    assert len(record.get("code").display) == 1000
    assert len(record.get("code").codes[0].display) == 1000
    locations = sorted(issue.location for issue in facts.issues)
    assert locations == ["Bundle.entry[1].resource.code.coding[0].display", "Bundle.entry[1].resource.code.text"]
    assert all(issue.diagnostics == "text longer than 1,000 characters: only the first 1,000 are read"
               for issue in facts.issues)


def test_a_very_long_medication_name_is_cut_to_1000_characters():
    statement = {"resourceType": "MedicationStatement", "id": "m1", "status": "active",
                 "medicationCodeableConcept": {"text": "calcium gluconate " + "y" * 50_000},
                 "subject": {"reference": PATIENT_UUID}, "effectiveDateTime": "2026-10-01"}
    facts = facts_of(statement)
    (record,) = facts.records("MedicationStatement")
    assert len(record.get("name")) == 1000 and record.get("name").startswith("calcium gluconate")
    (issue,) = facts.issues
    assert issue.location == "Bundle.entry[1].resource.medicationCodeableConcept.text"
