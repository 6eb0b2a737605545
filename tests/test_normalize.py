"""Normalization into the facts model: analytes, units, statuses, ranges, ages, other resource types."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.cql_like.quantity import Quantity
from service.cql_like.values import Code, Interval
from service.ingest import KeptResource, PatientResources, read_bundle
from service.normalize import build_facts

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
    ("2000-8", 2.5, "mmol/L", "calcium", "10.02", "mg/dL"),
    ("1995-0", 1.2, "mmol/L", "calcium-ionized", "4.8", "mg/dL"),
    ("14879-1", 1.5, "mmol/L", "phosphate", "4.6455", "mg/dL"),
    ("14682-9", 120, "umol/L", "creatinine", "1.3572", "mg/dL"),
    ("14866-8", 8, "pmol/L", "pth", "75.4", "pg/mL"),
    ("2731-8", 70, "ng/L", "pth", "70", "pg/mL"),
    ("68438-1", 100, "nmol/L", "vitamin-d-25oh", "40.06", "ng/mL"),
    ("1751-7", 38, "g/L", "albumin", "3.8", "g/dL"),
    ("14637-3", 6, "mmol/(24.h)", "urine-calcium-24h", "240.48", "mg/(24.h)"),
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


def test_a_comparator_value_is_not_an_exact_number():
    observation = ucum_lab("62292-8", 5, "ng/mL")
    observation["valueQuantity"]["comparator"] = "<"
    facts = facts_of(observation)
    assert facts.records("Observation") == ()
    assert facts.issues[0].location == "Bundle.entry[1].resource.valueQuantity.comparator"
    assert "'<5' is not an exact number" in facts.issues[0].diagnostics


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
    assert facts.issues[0].location == "Bundle.entry[1].resource.value[x]"
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


def test_issued_alone_is_enough_to_date_a_result():
    record = only_observation(facts_of(ucum_lab("17861-6", 9.0, "mg/dL", effective=None,
                                                issued="2026-10-03T10:00:00.000+02:00")))
    assert record.get("effective") is None
    assert record.get("issued") == datetime(2026, 10, 3, 8, 0, tzinfo=timezone.utc)


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
    assert record.get("referenceRange").high == Quantity(Decimal("9.8196"), "mg/dL")
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


def test_unknown_age_uses_adult_ranges_and_says_so():
    facts = facts_of(ucum_lab("2777-1", 5.5, "mg/dL"), birth=None)
    assert only_observation(facts).get("referenceRangeSource") == "default adult (unverified)"
    assert [issue.diagnostics for issue in facts.issues] == ["age unknown: adult default ranges applied"]


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
    facts = facts_of(bmi, survey)
    record = only_observation(facts)
    assert (record.get("analyte"), record.get("value")) == (None, Quantity(Decimal("33.1"), "kg/m2"))
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
                     ucum_lab("2000-8", 2.3, "mmol/L", resource_id="c"))
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
    assert only_observation(facts).get("referenceRangeSource") == "default adult (unverified)"
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
    kept = tuple(KeptResource(kind, dict(body, resourceType=kind), f"Bundle.entry[{n}].resource", f"{kind}/{n}")
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
