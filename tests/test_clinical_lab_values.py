"""Lab values as a clinician reads them, through the rule library and through the whole service.

Bounded results ('<3 pg/mL', '>2500 pg/mL') are shown as bounds, count as available, settle a flag
only when the bound does, and never enter a product or a ratio. A child's result is judged against
a child's range, and where no range can be cited for the age the assessment says so once. Two
calcium or phosphate results at the same instant that disagree make the test a repeat, not an
available result.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from service.cql_like.quantity import Quantity
from test_knowledge_scenarios import (  # noqa: F401  (assess is a fixture)
    GRADE_DEFINES, ICD10CM, SNOMED, Facts, assess, calcium, condition, grades, obs, patient, phosphate,
    recommended_codes, service_request, values_note)

CREST = ("M34.1", "CR(E)ST syndrome")
SAME_INSTANT = datetime(2026, 11, 10, 8, 0, tzinfo=timezone.utc)


def bounded(record, comparator):
    """`record` with its value turned into a bound ('<' 3 pg/mL is 'below 3 pg/mL')."""
    record.fields["comparator"] = comparator
    return record


def conflicting(record):
    """`record` marked as disagreeing with another result of its analyte at the same instant."""
    record.fields["conflictingSameInstant"] = True
    return record


def pth(value, flag, **kw):
    return obs("2731-8", value, "pg/mL", flag, **kw)


def albumin(value, flag, **kw):
    return obs("1751-7", value, "g/dL", flag, **kw)


def creatinine(value, flag, **kw):
    return obs("2160-0", value, "mg/dL", flag, **kw)


def available(out, code):
    return next(t for t in out["Available Tests"] if t["code"] == code)


def value_used(out, analyte):
    return next(v for v in out["Values Used"] if v["analyte"] == analyte)


def all_rationales(out):
    return " ".join(out[name]["rationale"] for name in GRADE_DEFINES)


# --- bounded results ------------------------------------------------------------------------------------

def scenario_crest_with_normal_minerals_and_pth_below_3() -> Facts:
    return Facts([condition(ICD10CM, *CREST), calcium("9.4"), phosphate("3.5"),
                  bounded(pth("3", "L", range_source="default adult (unverified)"), "<")], patient())


def test_a_pth_below_3_is_shown_as_a_bound_low_and_counts_as_available(assess):
    out = assess(scenario_crest_with_normal_minerals_and_pth_below_3())
    assert grades(out)["dystrophic"] == "high"
    assert "; PTH below 3 pg/mL on 2026-11-05 (L)." in values_note(out)
    assert "PTH 3 pg/mL" not in all_rationales(out)
    assert "2731-8" not in recommended_codes(out)
    assert available(out, "2731-8")["summary"] == "below 3 pg/mL on 2026-11-05"
    used = value_used(out, "pth")
    assert (used["value"], used["comparator"], used["flag"]) == (Quantity(Decimal("3"), "pg/mL"), "<", "L")


def test_a_pth_above_2500_is_high_and_named_as_a_bound_wherever_it_counts(assess):
    out = assess(Facts([calcium("11.8", "H"), phosphate("3.2"), bounded(pth("2500", "H"), ">")], patient()))
    assert grades(out)["dystrophic"] == "negligible" and grades(out)["idiopathic"] == "negligible"
    assert "PTH above 2500 pg/mL on 2026-11-05 (H)" in out["Metastatic"]["rationale"]  # a cause
    assert "PTH above 2500 pg/mL on 2026-11-05 (H)" in values_note(out)
    # It counts as a calciphylaxis risk factor: with kidney failure and skin necrosis the picture is high.
    picture = assess(Facts([condition(ICD10CM, "N18.6", "End stage renal disease"),
                            condition(None, None, "Necrosis of skin of abdominal wall"),
                            calcium("11.8", "H"), phosphate("3.2"), bounded(pth("2500", "H"), ">")], patient()))
    assert grades(picture)["calciphylaxis"] == "high"
    assert "risk factors: PTH above 2500 pg/mL on 2026-11-05 (H)" in picture["Calciphylaxis"]["rationale"]
    assert "2731-8" not in recommended_codes(out)
    assert available(out, "2731-8")["summary"] == "above 2500 pg/mL on 2026-11-05"


def test_a_bound_that_does_not_settle_the_flag_is_reported_not_quantified_and_not_proposed_again(assess):
    out = assess(Facts([calcium("9.4"), phosphate("3.5"),
                        bounded(pth("20", None, low="15", high="68"), "<")], patient()))
    assert "PTH below 20 pg/mL on 2026-11-05 (result not quantified)" in values_note(out)
    assert "2731-8" not in recommended_codes(out)
    assert available(out, "2731-8")["summary"] == "result not quantified (below 20 pg/mL) on 2026-11-05"
    assert value_used(out, "pth")["flag"] is None
    assert "(H)" not in out["Metastatic"]["rationale"]  # an unsettled bound is no high PTH


def test_a_calcium_below_6_is_low_but_never_multiplied_nor_corrected_for_albumin(assess):
    out = assess(Facts([condition(ICD10CM, *CREST), bounded(calcium("6", "L"), "<"), phosphate("3.5"),
                        albumin("2.5", "L")], patient()))
    rationale = out["Dystrophic"]["rationale"]
    assert grades(out)["dystrophic"] == "low"  # tissue damage with an abnormal calcium
    assert "Ca below 6 mg/dL on 2026-11-05 (L)" in rationale
    assert "albumin correction not applied: calcium below 6 mg/dL is a bound, not a value" in values_note(out)
    assert "Ca x P cannot be computed: calcium below 6 mg/dL is a bound, not a value" in values_note(out)
    assert "Ca x P cannot be computed: calcium below 6 mg/dL is a bound, not a value" in out["Metastatic"]["rationale"]
    assert "albumin-corrected Ca" not in rationale
    analytes = [v["analyte"] for v in out["Values Used"]]
    assert "ca-x-p" not in analytes and "calcium-corrected" not in analytes
    assert "17861-6" not in recommended_codes(out)


def test_a_phosphate_above_10_is_high_but_the_product_cannot_be_computed(assess):
    out = assess(Facts([calcium("10.0"), bounded(phosphate("10", "H"), ">")], patient()))
    rationale = out["Metastatic"]["rationale"]
    assert grades(out)["metastatic"] == "moderate"
    assert "P above 10 mg/dL on 2026-11-05 (H)" in rationale
    assert "Ca x P cannot be computed: phosphate above 10 mg/dL is a bound, not a value" in rationale
    assert "exceeds 70" not in rationale
    assert "ca-x-p" not in [v["analyte"] for v in out["Values Used"]]


def test_an_albumin_below_1_5_is_never_used_to_correct_the_calcium(assess):
    out = assess(Facts([calcium("8.0", "L"), phosphate("3.5"), bounded(albumin("1.5", "L"), "<")], patient()))
    rationale = out["Metastatic"]["rationale"]
    assert "Ca 8 mg/dL on 2026-11-05 (L)" in rationale
    assert ("albumin correction not applied: albumin below 1.5 g/dL is a bound, not a value" in values_note(out))
    assert "albumin-corrected Ca" not in rationale and "albumin-corrected Ca" not in values_note(out)
    assert "Ca x P 28 mg2/dL2 does not exceed 70 mg2/dL2" in rationale  # total calcium x phosphate: both exact
    assert "calcium-corrected" not in [v["analyte"] for v in out["Values Used"]]
    assert available(out, "1751-7")["summary"] == "below 1.5 g/dL on 2026-11-05"


def test_exact_results_still_give_a_product(assess):
    out = assess(Facts([calcium("10.8", "H"), phosphate("7.6", "H")], patient()))
    assert "Ca x P 82.1 mg2/dL2 exceeds 70 mg2/dL2" in out["Metastatic"]["rationale"]


# --- children ---------------------------------------------------------------------------------------------

def test_a_six_year_olds_pth_above_a_childs_range_counts_as_high(assess):
    child = patient(date(2020, 6, 1))
    out = assess(Facts([calcium("9.6", low="8.8", high="10.8", range_source="default child 1-17 y (unverified)"),
                        phosphate("4.6", low="3.7", high="5.8", range_source="default child 1-12 y (unverified)"),
                        pth("60", "H", low="11", high="59", range_source="default child 1-10 y")], child))
    assert "PTH 60 pg/mL on 2026-11-05 (H)" in out["Metastatic"]["rationale"]
    assert ("Parathyroid hormone (intact): default child 1-10 y reference range applied (11-59 pg/mL); "
            "the lab sent none.") in out["Notes"]
    assert not any("no default range" in note for note in out["Notes"])


def scenario_fifteen_year_old_whose_creatinine_has_no_default_range() -> Facts:
    teenager = patient(date(2011, 5, 1))
    return Facts([calcium("9.6", low="8.8", high="10.8", range_source="default child 1-17 y (unverified)"),
                  phosphate("4.0", low="2.9", high="5.4", range_source="default adolescent 13-17 y (unverified)"),
                  creatinine("0.9", None, range_source="no default range for this age"),
                  creatinine("0.8", None, days_ago=40, range_source="no default range for this age"),
                  pth("66", "N", low="15", high="68", range_source="default adolescent 11-17 y")], teenager)


def test_a_fifteen_year_olds_creatinine_without_a_default_range_is_said_once_in_the_notes(assess):
    out = assess(scenario_fifteen_year_old_whose_creatinine_has_no_default_range())
    said = [note for note in out["Notes"] if "no default range for this age" in note]
    assert said == ["Creatinine 0.9 mg/dL on 2026-11-05: no default range for this age and the lab sent none: "
                    "not flagged (unknown, not normal)."]
    assert "no default range" not in all_rationales(out)
    assert "creatinine 0.9 mg/dL on 2026-11-05 (no flag)" in values_note(out)
    assert "PTH 66 pg/mL on 2026-11-05 (N)" in values_note(out)
    assert value_used(out, "creatinine")["range"] == "(no default range for this age)"
    assert not any("no default range for this age reference range applied" in note for note in out["Notes"])


def test_each_analyte_without_a_default_range_gets_its_own_single_note(assess):
    facts = scenario_fifteen_year_old_whose_creatinine_has_no_default_range()
    facts.records.append(obs("1751-7", "4.1", "g/dL", None, range_source="no default range for this age"))
    out = assess(facts)
    said = [note for note in out["Notes"] if "no default range for this age" in note]
    assert [note.split(" ")[0] for note in said] == ["Creatinine", "Albumin"]


# --- two results at the same instant that disagree --------------------------------------------------------

def test_two_calciums_at_the_same_instant_that_disagree_make_a_repeat_not_an_available_result(assess):
    out = assess(Facts([conflicting(calcium("11.8", "H", effective=SAME_INSTANT)),
                        conflicting(calcium("9.4", "N", effective=SAME_INSTANT)),
                        phosphate("3.5")], patient()))
    repeats = [{key: t[key] for key in ("code", "system", "display", "group", "reason")}
               for t in out["Recommended Tests"] if t["code"] == "17861-6"]
    assert repeats == [{"code": "17861-6", "system": "http://loinc.org",
                        "display": "Calcium [Mass/volume] in Serum or Plasma", "group": "baseline",
                        "reason": "Repeat: two calcium results at 2026-11-10T08:00 disagree (9.4 and 11.8 mg/dL)"}]
    assert "17861-6" not in [t["code"] for t in out["Available Tests"]]
    assert "2777-1" in [t["code"] for t in out["Available Tests"]]


def test_two_phosphates_at_the_same_instant_that_disagree_make_a_repeat(assess):
    out = assess(Facts([calcium("9.4"),
                        conflicting(phosphate("3.5", "N", effective=SAME_INSTANT)),
                        conflicting(phosphate("6.1", "H", effective=SAME_INSTANT))], patient()))
    (repeat,) = [t for t in out["Recommended Tests"] if t["code"] == "2777-1"]
    assert repeat["reason"] == "Repeat: two phosphate results at 2026-11-10T08:00 disagree (3.5 and 6.1 mg/dL)"
    assert "2777-1" not in [t["code"] for t in out["Available Tests"]]


def test_three_calciums_that_disagree_are_all_named(assess):
    out = assess(Facts([conflicting(calcium("9.4", "N", effective=SAME_INSTANT)),
                        conflicting(calcium("11.8", "H", effective=SAME_INSTANT)),
                        conflicting(calcium("10.1", "N", effective=SAME_INSTANT)), phosphate("3.5")], patient()))
    (repeat,) = [t for t in out["Recommended Tests"] if t["code"] == "17861-6"]
    assert repeat["reason"] == "Repeat: 3 calcium results at 2026-11-10T08:00 disagree (9.4, 10.1 and 11.8 mg/dL)"


def test_a_disagreement_at_an_older_instant_is_not_repeated_once_a_later_calcium_is_on_file(assess):
    older = datetime(2026, 10, 1, 8, 0, tzinfo=timezone.utc)
    out = assess(Facts([conflicting(calcium("11.8", "H", effective=older)),
                        conflicting(calcium("9.4", "N", effective=older)),
                        calcium("9.6", days_ago=2), phosphate("3.5")], patient()))
    assert "17861-6" not in recommended_codes(out)
    assert available(out, "17861-6")["summary"] == "9.6 mg/dL on 2026-11-13"


def test_a_disagreement_with_a_calcium_already_ordered_is_not_proposed_twice(assess):
    out = assess(Facts([conflicting(calcium("11.8", "H", effective=SAME_INSTANT)),
                        conflicting(calcium("9.4", "N", effective=SAME_INSTANT)),
                        phosphate("3.5"), service_request("17861-6", "active")], patient()))
    assert "17861-6" not in recommended_codes(out)
    assert available(out, "17861-6")["summary"] == (
        "11.8 mg/dL on 2026-11-10 (another result at the same instant disagrees)")


# --- the whole service: a real FHIR Bundle in, FHIR resources out ----------------------------------------

UCUM = "http://unitsofmeasure.org"
NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)


def _patient(pid, birth):
    return {"resourceType": "Patient", "id": pid, "birthDate": birth, "gender": "female"}


def _lab(rid, pid, code, value, unit, comparator=None):
    quantity = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    if comparator is not None:
        quantity["comparator"] = comparator
    return {"resourceType": "Observation", "id": rid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2026-11-01T08:00:00Z",
            "valueQuantity": quantity}


def _egfr_as_sent(rid, pid, value):
    observation = _lab(rid, pid, "33914-3", value, "mL/min/1.73m2")
    del observation["valueQuantity"]["system"], observation["valueQuantity"]["code"]
    return observation


@pytest.fixture(scope="module")
def assessed():
    from service.pipeline.assess import assess_bundle
    from service.fhir_outputs.result_bundle import build_result_bundle

    resources = [
        _patient("adult", "1970-01-01"),
        _lab("adult-ca", "adult", "17861-6", 9.4, "mg/dL"), _lab("adult-p", "adult", "2777-1", 3.5, "mg/dL"),
        _lab("adult-pth", "adult", "2731-8", 3, "pg/mL", comparator="<"),
        _egfr_as_sent("adult-gfr", "adult", 42),
        _patient("six", "2020-06-01"),
        _lab("six-ca", "six", "17861-6", 9.6, "mg/dL"), _lab("six-p", "six", "2777-1", 4.6, "mg/dL"),
        _lab("six-pth", "six", "2731-8", 60, "pg/mL"),
        _patient("fifteen", "2011-05-01"),
        _lab("fifteen-ca", "fifteen", "17861-6", 9.6, "mg/dL"), _lab("fifteen-p", "fifteen", "2777-1", 4.0, "mg/dL"),
        _lab("fifteen-cr", "fifteen", "2160-0", 0.9, "mg/dL"), _lab("fifteen-pth", "fifteen", "2731-8", 66, "pg/mL"),
    ]
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": f"https://example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r}
                        for r in resources]}
    run = assess_bundle(bundle, now=NOW)
    return run, build_result_bundle(run.patients, run.issues)


def _for(result, resource_type, pid):
    return [entry["resource"] for entry in result["entry"] if entry["resource"]["resourceType"] == resource_type
            and entry["resource"].get("subject", {}).get("reference", "").endswith(f"Patient/{pid}")]


def _rationale(risk):
    return " ".join(prediction.get("rationale", "") for prediction in risk["prediction"])


def _values_note_text(risk):
    (note,) = [note["text"] for note in risk.get("note", []) if note["text"].startswith("Values used: ")]
    return note


def test_every_output_resource_is_valid_r4(assessed):
    from test_outputs_scenarios import validate_r4

    _, result = assessed
    validate_r4(result)
    for entry in result["entry"]:
        validate_r4(entry["resource"])


def test_an_adults_bounded_pth_and_egfr_in_ml_per_min_per_1_73m2_are_used_end_to_end(assessed):
    _, result = assessed
    (risk,) = _for(result, "RiskAssessment", "adult")
    rationale = _rationale(risk)
    assert "PTH below 3 pg/mL on 2026-11-01 (L)" in _values_note_text(risk)
    assert "eGFR 42 mL/min/1.73 m2 on 2026-11-01" in rationale
    ordered = {coding["code"] for request in _for(result, "ServiceRequest", "adult")
               for coding in request["code"]["coding"]}
    assert "2731-8" not in ordered and "17861-6" not in ordered
    outcome = [entry["resource"] for entry in result["entry"] if entry["resource"]["resourceType"] == "OperationOutcome"]
    issues = [issue for resource in outcome for issue in resource.get("issue", [])]
    assert any("'<3 pg/mL' is a bound, not a measured value" in issue.get("diagnostics", "")
               and issue["severity"] == "information" for issue in issues)
    assert not any("eGFR" in issue.get("diagnostics", "") and issue["severity"] != "information" for issue in issues)


def test_a_six_year_olds_pth_is_judged_against_a_childs_range_end_to_end(assessed):
    _, result = assessed
    (risk,) = _for(result, "RiskAssessment", "six")
    assert "PTH 60 pg/mL on 2026-11-01 (H)" in _rationale(risk)
    notes = [note["text"] for note in risk.get("note", [])]
    assert ("Parathyroid hormone (intact): default child 1-10 y reference range applied (11-59 pg/mL); "
            "the lab sent none.") in notes


def test_a_fifteen_year_olds_creatinine_without_a_default_range_is_noted_once_end_to_end(assessed):
    _, result = assessed
    (risk,) = _for(result, "RiskAssessment", "fifteen")
    notes = [note["text"] for note in risk.get("note", [])]
    assert [note for note in notes if "no default range for this age" in note] == [
        "Creatinine 0.9 mg/dL on 2026-11-01: no default range for this age and the lab sent none: "
        "not flagged (unknown, not normal)."]
    rationale = _rationale(risk)
    assert "no default range" not in rationale
    assert "PTH 66 pg/mL on 2026-11-01 (N)" in _values_note_text(risk)  # normal for 15 (15-68), high for an adult


def test_the_text_summary_and_the_card_detail_show_a_bound_as_a_bound(assessed):
    from service.summary import format_summary

    run, _ = assessed
    text = format_summary(run.patients, run.issues)
    assert "below 3 pg/mL" in text
    assert "Parathyroid hormone (intact): 3 pg/mL" not in text
    from service.assessment_model import ValueUsed
    from service.hooks.cards import key_number_text

    pth_value = ValueUsed(analyte="pth", label="Parathyroid hormone (intact)", value=Decimal("3"), unit="pg/mL",
                          effective=None, source="Observation/adult-pth", flag="L", comparator="<")
    data = {"short_labels": {"pth": "PTH"}, "ca_x_p_analytes": ("ca-x-p",)}
    assert key_number_text((pth_value,), ("pth",), data) == "PTH below 3 pg/mL (L)"
