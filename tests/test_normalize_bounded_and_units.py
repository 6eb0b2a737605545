"""Normalization of lab results as real feeds send them: eGFR units, bounded values, children's
default ranges, and results of one analyte at the same instant that disagree.

Each test is a small clinical story about one result (or two) and what the facts the rules read
say about it: the value kept, its unit, its flag, the range applied and the issue the clinician sees.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from service.cql_like.quantity import Quantity
from service.cql_like.values import Interval
from test_normalize import UCUM, V3, facts_of, lab, only_observation, ucum_lab

EGFR = "33914-3"
CANONICAL_EGFR = "mL/min/{1.73_m2}"
SAME_INSTANT = "2026-11-10T08:00:00Z"


def bounded(code, comparator, value, unit, **extra):
    observation = ucum_lab(code, value, unit, **extra)
    observation["valueQuantity"]["comparator"] = comparator
    return observation


def normal_range(low, high, unit):
    return [{"low": {"value": low, "unit": unit, "system": UCUM, "code": unit},
             "high": {"value": high, "unit": unit, "system": UCUM, "code": unit}}]


def information(facts):
    return [issue for issue in facts.issues if issue.severity == "information"]


# --- eGFR: every common spelling of its unit ----------------------------------------------------------

EGFR_SPELLINGS = [
    "mL/min/1.73m2", "mL/min/1.73 m2", "mL/min/{1.73m2}", "mL/min/1.73_m2", "ml/min/1.73m^2",
    "mL/min/1.73 sq.m", "mL/min/1.73 sq. m", "mL/min/1.73 sq M", "mL/min/{1.73_m2}", "mL/min/1.73m²",
    "mL/min/{1.73 m2}", "mL/min per 1.73 m2", "mL/min per 1.73m2",
]


@pytest.mark.parametrize("spelling", EGFR_SPELLINGS)
def test_an_egfr_sent_with_a_common_spelling_of_its_unit_in_the_unit_text_is_used(spelling):
    record = only_observation(facts := facts_of(lab(EGFR, 42, spelling)))
    assert record.get("value") == Quantity(Decimal("42"), CANONICAL_EGFR)
    assert facts.issues == ()


@pytest.mark.parametrize("spelling", EGFR_SPELLINGS)
def test_an_egfr_sent_with_the_spelling_as_its_ucum_code_is_used(spelling):
    record = only_observation(facts := facts_of(ucum_lab(EGFR, 42, spelling)))
    assert record.get("value") == Quantity(Decimal("42"), CANONICAL_EGFR)
    assert facts.issues == ()


def test_a_bare_ml_per_min_egfr_is_read_per_1_73_m2_and_the_clinician_is_told_where():
    record = only_observation(facts := facts_of(lab(EGFR, 7, "mL/min")))
    assert record.get("value") == Quantity(Decimal("7"), CANONICAL_EGFR)
    (issue,) = facts.issues
    assert (issue.severity, issue.code) == ("information", "informational")
    assert issue.location == "Bundle.entry[1].resource.valueQuantity.unit"
    assert issue.diagnostics == ("eGFR (MDRD) (LOINC 33914-3): unit 'mL/min' read as mL/min/1.73 m2 "
                                 "(an estimated GFR is normalised to 1.73 m2 of body surface area)")


def test_synthea_style_egfr_with_ml_per_min_as_unit_and_ucum_code_is_used_with_the_note_at_the_code():
    record = only_observation(facts := facts_of(ucum_lab(EGFR, 55.4, "mL/min")))
    assert record.get("value") == Quantity(Decimal("55.4"), CANONICAL_EGFR)
    (issue,) = facts.issues
    assert issue.location == "Bundle.entry[1].resource.valueQuantity.code"
    assert "read as mL/min/1.73 m2" in issue.diagnostics


def test_a_lab_range_for_egfr_in_bare_ml_per_min_is_read_the_same_way():
    observation = lab(EGFR, 50, "mL/min/1.73m2", referenceRange=[{"low": {"value": 60, "unit": "mL/min"}}])
    record = only_observation(facts_of(observation))
    assert record.get("referenceRange") == Interval(Quantity(Decimal("60"), CANONICAL_EGFR), None)
    assert record.get("interpretation") == "L"


def test_bare_ml_per_min_is_not_accepted_for_any_other_analyte():
    facts = facts_of(lab("2160-0", 90, "mL/min"))
    assert facts.records("Observation") == ()
    (issue,) = facts.issues
    assert (issue.severity, issue.code) == ("warning", "code-invalid")
    assert "unit 'mL/min' cannot be converted to mg/dL for Creatinine" in issue.diagnostics


# --- bounded results ('<3 pg/mL', '>2500 pg/mL') ------------------------------------------------------

def test_a_pth_below_3_is_kept_as_a_bound_and_is_low_against_the_adult_default_range():
    facts = facts_of(bounded("2731-8", "<", 3, "pg/mL"))
    record = only_observation(facts)
    assert record.get("value") == Quantity(Decimal("3"), "pg/mL")
    assert record.get("comparator") == "<"
    assert (record.get("interpretation"), record.get("interpretationSource")) == ("L", "range")
    (issue,) = facts.issues
    assert (issue.severity, issue.location) == ("information", "Bundle.entry[1].resource.valueQuantity.comparator")
    assert issue.diagnostics == (
        "PTH, intact (serum) (LOINC 2731-8): '<3 pg/mL' is a bound, not a measured value: kept as "
        "'below 3 pg/mL', flagged L against the default adult (unverified) range 10-65 pg/mL; "
        "never used in a product or ratio")


def test_a_pth_above_2500_is_high_against_any_range():
    record = only_observation(facts_of(bounded("2731-8", ">", 2500, "pg/mL")))
    assert (record.get("value"), record.get("comparator"), record.get("interpretation")) == (
        Quantity(Decimal("2500"), "pg/mL"), ">", "H")


@pytest.mark.parametrize("comparator, value, flag", [
    ("<", 10, "L"),     # below 10: every such value is below the low limit 10
    ("<=", 10, None),   # 10 itself is normal: the bound does not settle it
    ("<=", 9.9, "L"),
    ("<", 12, None),    # 10-11.99 are normal, below 10 low: not settled
    (">", 65, "H"),     # above 65: every such value is above the high limit 65
    (">=", 65, None),   # 65 itself is normal
    (">=", 65.1, "H"),
    (">", 60, None),
])
def test_a_bound_gets_a_flag_only_when_the_bound_settles_it_against_the_range(comparator, value, flag):
    observation = bounded("2731-8", comparator, value, "pg/mL", referenceRange=normal_range(10, 65, "pg/mL"))
    record = only_observation(facts := facts_of(observation))
    assert record.get("comparator") == comparator
    assert record.get("interpretation") == flag
    assert record.get("referenceRangeSource") == "lab"
    (issue,) = information(facts)
    if flag is None:
        assert issue.diagnostics.endswith(
            "not flagged: the bound does not settle it against the lab range 10-65 pg/mL (result not "
            "quantified); never used in a product or ratio")


def test_a_bound_in_si_units_is_converted_like_a_value():
    record = only_observation(facts_of(bounded("14866-8", "<", 0.3, "pmol/L")))
    assert record.get("value") == Quantity(Decimal("2.83"), "pg/mL")
    assert (record.get("comparator"), record.get("interpretation")) == ("<", "L")


def test_the_labs_own_flag_on_a_bounded_result_wins():
    observation = bounded("2731-8", "<", 12, "pg/mL", referenceRange=normal_range(10, 65, "pg/mL"),
                          interpretation=[{"coding": [{"system": V3, "code": "L"}]}])
    record = only_observation(facts := facts_of(observation))
    assert (record.get("interpretation"), record.get("interpretationSource")) == ("L", "lab")
    (issue,) = information(facts)
    assert "flagged L by the lab" in issue.diagnostics


def test_a_vitamin_d_above_the_open_ended_default_is_kept_unflagged():
    record = only_observation(facts := facts_of(bounded("62292-8", ">", 150, "ng/mL")))
    assert (record.get("value"), record.get("comparator"), record.get("interpretation")) == (
        Quantity(Decimal("150"), "ng/mL"), ">", None)
    (issue,) = information(facts)
    assert "not flagged: the bound does not settle it against the default any age (unverified) range >= 20 ng/mL" \
        in issue.diagnostics


def test_a_comparator_this_service_does_not_read_is_still_refused():
    facts = facts_of(bounded("2731-8", "~", 3, "pg/mL"))
    assert facts.records("Observation") == ()
    (issue,) = facts.issues
    assert (issue.severity, issue.location) == ("warning", "Bundle.entry[1].resource.valueQuantity.comparator")
    assert "comparator '~' is not one of <, <=, >=, >" in issue.diagnostics


@pytest.mark.parametrize("comparator", [["<"], 3, {"code": "<"}, ""])
def test_a_comparator_that_is_not_text_is_refused_without_failing(comparator):
    # R4 validation at ingest refuses these; the normalizer still never fails on them.
    from service.pipeline.ingest import KeptResource, PatientResources
    from service.pipeline.normalize import build_facts
    from test_normalize import NOW, patient

    observation = bounded("2731-8", comparator, 3, "pg/mL")
    kept = (KeptResource("Observation", observation, 1, "Observation/o1"),)
    facts = build_facts(PatientResources("p1", "Patient/p1", patient(), kept), now=NOW)
    assert facts.records("Observation") == ()
    (issue,) = facts.issues
    assert (issue.severity, issue.location) == ("warning", "Bundle.entry[1].resource.valueQuantity.comparator")


def test_an_exact_result_has_no_comparator():
    record = only_observation(facts_of(ucum_lab("2731-8", 40, "pg/mL")))
    assert record.get("comparator") is None


def test_two_results_at_the_same_instant_one_bounded_one_exact_with_the_same_number_disagree():
    facts = facts_of(bounded("2731-8", "<", 3, "pg/mL", resource_id="a", effective=SAME_INSTANT),
                     ucum_lab("2731-8", 3, "pg/mL", resource_id="b", effective=SAME_INSTANT))
    (issue,) = [issue for issue in facts.issues if issue.code == "conflict"]
    assert "<3 pg/mL" in issue.diagnostics
    assert {record.get("conflictingSameInstant") for record in facts.records("Observation")} == {True}


# --- children's default ranges ------------------------------------------------------------------------

SIX_YEAR_OLD = "2020-06-01"       # 6 at the sample date 2026-10-02
FIFTEEN_YEAR_OLD = "2011-05-01"   # 15 at the sample date


@pytest.mark.parametrize("code, value, unit, flag, label", [
    ("2731-8", 60, "pg/mL", "H", "default child 1-10 y"),            # 11-59 pg/mL
    ("2731-8", 12, "pg/mL", "N", "default child 1-10 y"),
    ("2160-0", 0.9, "mg/dL", "H", "default child 6-10 y"),           # 0.51-0.81 mg/dL
    ("2160-0", 0.6, "mg/dL", "N", "default child 6-10 y"),
    ("1751-7", 3.4, "g/dL", "L", "default child 4-6 y"),             # 3.5-5.2 g/dL
    ("1995-0", 1.32, "mmol/L", "H", "default child 1 m-17 y"),       # 1.11-1.30 mmol/L = 4.44-5.20 mg/dL
    ("1995-0", 1.20, "mmol/L", "N", "default child 1 m-17 y"),
])
def test_a_six_year_olds_results_are_judged_against_a_childs_range(code, value, unit, flag, label):
    record = only_observation(facts := facts_of(ucum_lab(code, value, unit), birth=SIX_YEAR_OLD))
    assert (record.get("interpretation"), record.get("referenceRangeSource")) == (flag, label)
    assert facts.issues == ()


@pytest.mark.parametrize("code, value, unit, flag, label", [
    ("2731-8", 66, "pg/mL", "N", "default adolescent 11-17 y"),      # 15-68 pg/mL: high for an adult
    ("2731-8", 70, "pg/mL", "H", "default adolescent 11-17 y"),
    ("1751-7", 3.6, "g/dL", "L", "default child 7-17 y"),            # 3.7-5.6 g/dL
    ("1995-0", 1.10, "mmol/L", "L", "default child 1 m-17 y"),
])
def test_a_fifteen_year_olds_results_are_judged_against_an_adolescents_range(code, value, unit, flag, label):
    record = only_observation(facts_of(ucum_lab(code, value, unit), birth=FIFTEEN_YEAR_OLD))
    assert (record.get("interpretation"), record.get("referenceRangeSource")) == (flag, label)


def test_a_fifteen_year_olds_creatinine_has_no_default_range_and_is_not_flagged():
    record = only_observation(facts := facts_of(ucum_lab("2160-0", 0.9, "mg/dL"), birth=FIFTEEN_YEAR_OLD))
    assert record.get("interpretation") is None
    assert record.get("referenceRange") is None
    assert record.get("referenceRangeSource") == "no default range for this age"
    assert facts.issues == ()  # said once by the assessment's notes, not per result


def test_a_lab_range_still_wins_for_a_child():
    observation = ucum_lab("2160-0", 0.9, "mg/dL", referenceRange=normal_range(0.5, 1.0, "mg/dL"))
    record = only_observation(facts_of(observation, birth=FIFTEEN_YEAR_OLD))
    assert (record.get("interpretation"), record.get("referenceRangeSource")) == ("N", "lab")


def test_an_adults_pth_keeps_the_adult_range():
    record = only_observation(facts_of(ucum_lab("2731-8", 66, "pg/mL")))
    assert (record.get("interpretation"), record.get("referenceRangeSource")) == ("H", "default adult (unverified)")


def test_every_childs_band_cites_a_publication_not_a_file():
    from service.terminology import load_terminology

    terminology = load_terminology()
    for analyte in ("pth", "creatinine", "albumin", "calcium-ionized"):
        children = [band for band in terminology.default_ranges(analyte) if not band.adult]
        assert children, analyte
        for band in children:
            assert band.mark == "V2"
            assert ".md" not in band.source and ".json" not in band.source
            assert any(word in band.source for word in ("Davis's Lab & Diagnostic Tests", "ARUP Laboratories"))


# --- results at the same instant that disagree ----------------------------------------------------------

def test_two_calcium_results_at_the_same_instant_that_disagree_are_both_marked_conflicting():
    facts = facts_of(ucum_lab("17861-6", 9.4, "mg/dL", resource_id="x", effective=SAME_INSTANT),
                     ucum_lab("17861-6", 11.8, "mg/dL", resource_id="y", effective=SAME_INSTANT),
                     ucum_lab("17861-6", 9.0, "mg/dL", resource_id="z", effective="2026-09-01T08:00:00Z"))
    marks = {record.get("id"): record.get("conflictingSameInstant") for record in facts.records("Observation")}
    assert marks == {"x": True, "y": True, "z": False}


def test_two_results_at_the_same_instant_that_agree_are_not_conflicting():
    facts = facts_of(ucum_lab("17861-6", 9.5, "mg/dL", resource_id="x", effective=SAME_INSTANT),
                     ucum_lab("2000-8", 2.37, "mmol/L", resource_id="y", effective=SAME_INSTANT))
    # 2.37 mmol/L is 9.50 mg/dL: the same result in two units
    assert [record.get("conflictingSameInstant") for record in facts.records("Observation")] == [False, False]


@pytest.mark.parametrize("first, second", [("preliminary", "final"), ("final", "amended"), ("final", "corrected")])
def test_a_result_superseded_by_the_labs_correction_is_not_a_disagreement_to_repeat(first, second):
    facts = facts_of(ucum_lab("17861-6", 9.4, "mg/dL", resource_id="x", effective=SAME_INSTANT, status=first),
                     ucum_lab("17861-6", 11.8, "mg/dL", resource_id="y", effective=SAME_INSTANT, status=second))
    assert [record.get("conflictingSameInstant") for record in facts.records("Observation")] == [False, False]
    assert [issue.code for issue in facts.issues if issue.severity == "warning"] == ["conflict"]


def test_two_final_results_issued_at_different_times_still_disagree():
    facts = facts_of(ucum_lab("2777-1", 3.5, "mg/dL", resource_id="x", effective=SAME_INSTANT,
                              issued="2026-11-10T09:00:00Z"),
                     ucum_lab("2777-1", 6.1, "mg/dL", resource_id="y", effective=SAME_INSTANT,
                              issued="2026-11-10T10:00:00Z"))
    assert {record.get("conflictingSameInstant") for record in facts.records("Observation")} == {True}


def test_a_same_instant_result_of_another_analyte_is_not_a_twin():
    facts = facts_of(ucum_lab("17861-6", 9.4, "mg/dL", resource_id="x", effective=SAME_INSTANT),
                     ucum_lab("2777-1", 3.1, "mg/dL", resource_id="y", effective=SAME_INSTANT))
    assert [record.get("conflictingSameInstant") for record in facts.records("Observation")] == [False, False]
    assert facts.issues == ()


def test_the_same_instant_is_compared_as_an_instant_whatever_the_offset_written():
    facts = facts_of(ucum_lab("17861-6", 9.4, "mg/dL", resource_id="x", effective="2026-11-10T08:00:00Z"),
                     ucum_lab("17861-6", 11.8, "mg/dL", resource_id="y", effective="2026-11-10T10:00:00+02:00"))
    assert {record.get("conflictingSameInstant") for record in facts.records("Observation")} == {True}
    assert facts.records("Observation")[0].get("effective") == datetime(2026, 11, 10, 8, tzinfo=timezone.utc)
