"""Kidney function from labs: eGFR and creatinine establish kidney failure when no condition is coded.

KDIGO 2012 (Clinical Practice Guideline for the Evaluation and Management of CKD): a GFR below
15 mL/min/1.73 m2 is category G5, kidney failure; CKD is an abnormality present for more than
3 months. Where only creatinine is reported, eGFR is computed: CKD-EPI 2021 for adults (Inker LA et
al., N Engl J Med 2021;385:1737-49), bedside Schwartz for children with a height on file (Schwartz
GJ et al., J Am Soc Nephrol 2009;20:629-37). Each scenario runs through the rule library and checks
the grades and the wording a clinician reads.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from service.cql_like.quantity import Quantity
from service.cql_like.values import Record
from tests.support.output_sweep import assert_clean_outputs
from test_knowledge_scenarios import (
    SWEPT_DEFINES, ICD10CM, NOW, SNOMED, Facts, _LIBRARY, _engine_library, calcium, condition, grades, obs, patient, phosphate,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EGFR_UNIT = "mL/min/{1.73_m2}"


# ---- builders -----------------------------------------------------------------------------------

def person(birth: date | None, gender: str | None) -> Record:
    return Record("Patient", {"id": "p1", "birthDate": birth, "gender": gender}, source="Patient/p1")


def woman_aged_60_on_2026_11_10() -> Record:
    return person(date(1966, 5, 1), "female")


def egfr(value: str, flag: str | None = None, **kw) -> Record:
    return obs("98979-8", value, EGFR_UNIT, flag, **kw)


def creatinine(value: str, flag: str | None = "H", **kw) -> Record:
    return obs("2160-0", value, "mg/dL", flag, **kw)


def height(value: str, *, display: str = "Body height", **kw) -> Record:
    return obs("8302-2", value, "cm", None, display=display, **kw)


def evaluate(facts: Facts) -> dict[str, Any]:
    """Every define of the library for this patient (the interface defines as well as the outputs)."""
    if not _LIBRARY:
        _LIBRARY.append(_engine_library())
    result = _LIBRARY[0].evaluate(facts, now=NOW)
    outputs = {name: result[name].value for name in result}
    assert_clean_outputs(facts.records, outputs, SWEPT_DEFINES)
    return outputs


def all_text(out: dict[str, Any]) -> str:
    grades_text = " ".join(out[name]["rationale"] for name in ("Dystrophic", "Metastatic", "Idiopathic", "Iatrogenic",
                                                               "Calciphylaxis"))
    return grades_text + " " + " ".join(out["Notes"])


def ckd_epi_2021(scr: float, age: int, female: bool) -> float:
    """The CKD-EPI 2021 creatinine equation by hand (Inker LA et al., N Engl J Med 2021;385:1737-49)."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    return (142 * min(scr / kappa, 1) ** alpha * max(scr / kappa, 1) ** -1.200 * 0.9938 ** age
            * (1.012 if female else 1))


# ---- kidney failure from a reported eGFR ----------------------------------------------------------

def scenario_egfr_7_high_phosphate_no_coded_ckd(*earlier: Record) -> Facts:
    return Facts([calcium("9.8", "N", days_ago=5), phosphate("8.0", "H", days_ago=5), creatinine("7.24", days_ago=5),
                  egfr("7", "L", days_ago=5), obs("1751-7", "3.0", "g/dL", "L", days_ago=5), *earlier],
                 woman_aged_60_on_2026_11_10())


def test_an_egfr_of_7_with_a_high_phosphate_and_product_above_70_is_metastatic_high_and_kidney_failure():
    out = evaluate(scenario_egfr_7_high_phosphate_no_coded_ckd())
    assert grades(out)["metastatic"] == "high"
    assert out["Kidney Failure From Labs"] is True
    assert out["Has Renal Failure"] is True and out["Has CKD Or ESRD"] is True
    assert out["Kidney Chronicity Established"] is False
    phrase = ("eGFR 7 mL/min/1.73 m2 on 2026-11-10 (L) is below 15 mL/min/1.73 m2 (KDIGO 2012 category G5, kidney "
              "failure); single result, chronicity not established")
    assert out["Kidney Failure Evidence"] == [phrase]
    metastatic = out["Metastatic"]["rationale"]
    assert phrase in metastatic
    assert "No cause of metastatic calcinosis (kidney failure" not in metastatic
    assert "no kidney failure" not in all_text(out).lower()
    calciphylaxis = out["Calciphylaxis"]["rationale"]
    assert "Kidney failure / dialysis: " + phrase + ". " in calciphylaxis
    assert "No chronic kidney disease" not in calciphylaxis
    assert grades(out)["calciphylaxis"] == "low"  # kidney failure alone, no skin necrosis


def test_lab_kidney_failure_also_disables_the_albumin_correction_with_the_existing_note():
    out = evaluate(scenario_egfr_7_high_phosphate_no_coded_ckd())
    assert out["Albumin Correction Applies"] is False
    assert "calcium-corrected" not in [v["analyte"] for v in out["Values Used"]]
    assert "Albumin-corrected calcium is inaccurate in CKD/ESRD, so it was not used; ionized calcium is preferred." \
        in out["Notes"]


def test_an_egfr_below_15_a_year_earlier_establishes_chronicity_although_older_than_the_lookback():
    # 2025-11-10 is 370 days before the evaluation: no longer current, still evidence of how long it has lasted.
    out = evaluate(scenario_egfr_7_high_phosphate_no_coded_ckd(egfr("9", "L", days_ago=370)))
    assert out["Kidney Chronicity Established"] is True
    (phrase,) = out["Kidney Failure Evidence"]
    assert phrase == ("eGFR 7 mL/min/1.73 m2 on 2026-11-10 (L) is below 15 mL/min/1.73 m2 (KDIGO 2012 category G5, "
                      "kidney failure); chronic: eGFR 9 mL/min/1.73 m2 on 2025-11-10 was also below 15 mL/min/1.73 m2, "
                      "at least 90 days earlier")
    assert "chronicity not established" not in all_text(out)
    assert phrase in out["Metastatic"]["rationale"] and phrase in out["Calciphylaxis"]["rationale"]
    assert grades(out)["metastatic"] == "high"


def test_an_earlier_result_below_15_within_90_days_does_not_establish_chronicity():
    out = evaluate(scenario_egfr_7_high_phosphate_no_coded_ckd(egfr("11", "L", days_ago=40)))
    assert out["Kidney Chronicity Established"] is False
    assert out["Kidney Failure Evidence"][0].endswith(
        "; chronicity not established: no result below 15 mL/min/1.73 m2 at least 90 days earlier")


def test_a_recovery_in_between_means_chronicity_is_not_established():
    out = evaluate(scenario_egfr_7_high_phosphate_no_coded_ckd(egfr("9", "L", days_ago=370),
                                                               egfr("48", "L", days_ago=180)))
    assert out["Kidney Chronicity Established"] is False
    assert out["Kidney Failure Evidence"][0].endswith(
        "; chronicity not established: eGFR 48 mL/min/1.73 m2 on 2026-05-19 was not below 15 mL/min/1.73 m2")


def test_an_old_egfr_below_15_followed_by_a_current_normal_one_is_not_kidney_failure():
    out = evaluate(Facts([calcium("9.4"), phosphate("3.6"), egfr("9", "L", days_ago=300), egfr("75", "N", days_ago=5)],
                         woman_aged_60_on_2026_11_10()))
    assert out["Kidney Failure From Labs"] is False and out["Has Renal Failure"] is False
    assert ("No chronic kidney disease stage 3 to 5, ESRD or dialysis found among the conditions and procedures read, and the latest eGFR is not below 15 mL/min/1.73 m2 "
            "(eGFR 75 mL/min/1.73 m2 on 2026-11-10 (N)).") in out["Calciphylaxis"]["rationale"]


def test_with_coded_esrd_the_lab_value_is_named_without_doubting_chronicity():
    facts = scenario_egfr_7_high_phosphate_no_coded_ckd()
    facts.records.append(condition(ICD10CM, "N18.6", "End stage renal disease"))
    out = evaluate(facts)
    assert out["Kidney Failure Evidence"] == [
        "End stage renal disease",
        "eGFR 7 mL/min/1.73 m2 on 2026-11-10 (L) is below 15 mL/min/1.73 m2 (KDIGO 2012 category G5, kidney failure)"]
    assert "chronicity" not in all_text(out)


def test_lab_kidney_failure_with_skin_necrosis_and_diabetes_is_calciphylaxis_high_without_a_coded_ckd():
    facts = scenario_egfr_7_high_phosphate_no_coded_ckd()
    facts.records += [condition(None, None, "Necrosis of skin of abdominal wall"),
                      condition(ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications")]
    out = evaluate(facts)
    assert grades(out)["calciphylaxis"] == "high"


# ---- eGFR computed from creatinine -------------------------------------------------------------

def test_creatinine_only_in_an_adult_woman_gives_the_ckd_epi_2021_egfr_and_says_it_was_computed():
    # By hand: 142 x (7.24 / 0.7)^-1.200 x 0.9938^60 x 1.012 = 142 x 0.0605942 x 0.688556 x 1.012 = 5.9957
    assert round(ckd_epi_2021(7.24, 60, True), 4) == 5.9957
    out = evaluate(Facts([calcium("9.8", days_ago=5), phosphate("8.0", "H", days_ago=5), creatinine("7.24", days_ago=5)],
                         woman_aged_60_on_2026_11_10()))
    assert abs(float(out["Computed eGFR Value"]) - 5.9957) < 0.0001
    assert out["eGFR Computed"] == Quantity(Decimal("6"), EGFR_UNIT)
    assert out["Kidney Failure From Labs"] is True
    computed = "eGFR 6 mL/min/1.73 m2 computed from creatinine 7.24 mg/dL on 2026-11-10 (CKD-EPI 2021)"
    assert out["Kidney Failure Evidence"] == [
        computed + " is below 15 mL/min/1.73 m2 (KDIGO 2012 category G5, kidney failure); single result, "
                   "chronicity not established"]
    assert computed in out["Metastatic"]["rationale"] and computed in out["Calciphylaxis"]["rationale"]
    (row,) = [v for v in out["Values Used"] if v["analyte"] == "egfr"]
    assert row["label"] == "eGFR computed from creatinine (CKD-EPI 2021)"
    assert row["value"] == Quantity(Decimal("6"), EGFR_UNIT)
    assert row["result"].source == next(v["result"].source for v in out["Values Used"] if v["analyte"] == "creatinine")
    assert row["effective"] == NOW - timedelta(days=5)
    assert not any(note.startswith("eGFR computed") for note in out["Notes"])


@pytest.mark.parametrize("scr, birth, gender, expected", [
    ("7.24", date(1966, 5, 1), "female", 6),     # above kappa: the -1.200 slope
    ("0.6", date(1996, 5, 1), "female", 124),    # below kappa: the female alpha -0.241
    ("1.0", date(1976, 5, 1), "male", 92),       # above kappa 0.9 for a man
    ("0.7", date(1976, 5, 1), "male", 112),      # below kappa: the male alpha -0.302
])
def test_the_computed_egfr_matches_the_equation_by_hand(scr, birth, gender, expected):
    age = 2026 - birth.year  # born 1 May: the birthday of 2026 is past on 2026-11-10
    assert round(ckd_epi_2021(float(scr), age, gender == "female")) == expected
    out = evaluate(Facts([creatinine(scr, "N", days_ago=5)], person(birth, gender)))
    assert out["eGFR Computed"] == Quantity(Decimal(expected), EGFR_UNIT)
    assert abs(float(out["Computed eGFR Value"]) - ckd_epi_2021(float(scr), age, gender == "female")) < 0.001


def test_a_reported_egfr_of_the_same_day_is_used_rather_than_computed():
    out = evaluate(Facts([creatinine("1.1", "N", days_ago=5), egfr("58", "L", days_ago=5)], woman_aged_60_on_2026_11_10()))
    assert out["eGFR Computed"] is None
    assert [v["label"] for v in out["Values Used"] if v["analyte"] == "egfr"] == ["eGFR"]


def test_a_creatinine_newer_than_the_reported_egfr_is_computed_so_a_new_kidney_failure_is_not_missed():
    out = evaluate(Facts([egfr("48", "L", days_ago=200), creatinine("7.24", days_ago=5)], woman_aged_60_on_2026_11_10()))
    assert out["eGFR Computed"] == Quantity(Decimal("6"), EGFR_UNIT)
    assert out["Kidney Failure From Labs"] is True


@pytest.mark.parametrize("patient_record, reason", [
    (person(date(1966, 5, 1), "unknown"),
     "No eGFR computed from creatinine 7.24 mg/dL on 2026-11-10: CKD-EPI 2021 needs the sex (female or male), "
     "and it is recorded as unknown."),
    (person(date(1966, 5, 1), None),
     "No eGFR computed from creatinine 7.24 mg/dL on 2026-11-10: CKD-EPI 2021 needs the sex (female or male), "
     "and none is recorded."),
    (person(None, "female"),
     "No eGFR computed from creatinine 7.24 mg/dL on 2026-11-10: no usable birth date, so the age the equations "
     "need is unknown."),
])
def test_an_unknown_sex_or_age_gives_no_ckd_epi_and_says_why_once(patient_record, reason):
    out = evaluate(Facts([calcium("9.8", days_ago=5), phosphate("8.0", "H", days_ago=5), creatinine("7.24", days_ago=5)],
                         patient_record))
    assert out["eGFR Computed"] is None and out["Kidney Failure From Labs"] is False
    assert all_text(out).count(reason) == 1 and reason in out["Notes"]
    assert "egfr" not in [v["analyte"] for v in out["Values Used"]]
    assert ("No chronic kidney disease stage 3 to 5, ESRD or dialysis found among the conditions and procedures read, and no current eGFR was reported or could be computed "
            "from creatinine 7.24 mg/dL on 2026-11-10.") in out["Calciphylaxis"]["rationale"]


# ---- children ------------------------------------------------------------------------------------

def a_child_aged_10() -> Record:
    return person(date(2016, 3, 1), "male")


def test_a_child_with_creatinine_and_height_gets_the_bedside_schwartz_egfr():
    # By hand: 0.413 x 130 cm / 4.1 mg/dL = 13.095
    out = evaluate(Facts([creatinine("4.1", days_ago=5), height("130", days_ago=30),
                          calcium("9.6", "N", days_ago=5), phosphate("7.9", "H", days_ago=5)], a_child_aged_10()))
    assert abs(float(out["Computed eGFR Value"]) - 0.413 * 130 / 4.1) < 0.0001
    assert out["eGFR Computed"] == Quantity(Decimal("13"), EGFR_UNIT)
    computed = ("eGFR 13 mL/min/1.73 m2 computed from creatinine 4.1 mg/dL on 2026-11-10 and height 130 cm on "
                "2026-10-16 (bedside Schwartz)")
    assert out["Kidney Failure Evidence"][0].startswith(computed + " is below 15 mL/min/1.73 m2")
    assert out["Kidney Failure From Labs"] is True
    (row,) = [v for v in out["Values Used"] if v["analyte"] == "egfr"]
    assert row["label"] == "eGFR computed from creatinine and height (bedside Schwartz)"


def test_a_child_without_a_height_gets_no_egfr_and_it_is_said_once():
    out = evaluate(Facts([creatinine("1.5", days_ago=5), calcium("9.6", "N", days_ago=5), phosphate("5.0", "N", days_ago=5)],
                         a_child_aged_10()))
    assert out["eGFR Computed"] is None and out["Kidney Failure From Labs"] is False
    reason = ("No eGFR computed from creatinine 1.5 mg/dL on 2026-11-10: the bedside Schwartz equation for children "
              "needs a body height, and none within 1 year was found.")
    assert reason in out["Notes"]
    assert all_text(out).count("needs a body height") == 1
    assert "CKD-EPI" not in all_text(out)


def test_a_height_coded_8302_2_but_named_otherwise_is_not_a_body_height():
    out = evaluate(Facts([creatinine("4.1", days_ago=5), height("130", display="Body weight", days_ago=30)],
                         a_child_aged_10()))
    assert out["Body Height"] is None and out["eGFR Computed"] is None


def test_an_implausible_height_is_never_fed_into_the_equation():
    out = evaluate(Facts([creatinine("4.1", days_ago=5), height("1.3", days_ago=30)], a_child_aged_10()))
    assert out["eGFR Computed"] is None
    assert ("No eGFR computed from creatinine 4.1 mg/dL on 2026-11-10: body height 1.3 cm on 2026-10-16 is "
            "implausible.") in out["Notes"]


def test_an_infant_gets_no_bedside_schwartz():
    out = evaluate(Facts([creatinine("1.2", days_ago=5), height("60", days_ago=5)], person(date(2026, 5, 1), "female")))
    assert out["eGFR Computed"] is None
    assert any("derived in children aged 1 to 16 years" in note for note in out["Notes"])


# ---- CKD stage 3 is a risk context, not kidney failure --------------------------------------------------

def test_a_coded_ckd_stage_3_with_normal_labs_is_named_as_context_never_as_kidney_failure():
    out = evaluate(Facts([condition(SNOMED, "433144002", "Chronic kidney disease stage 3 (disorder)"),
                          calcium("9.4"), phosphate("3.6"), egfr("48", "L", days_ago=5)], woman_aged_60_on_2026_11_10()))
    assert out["Has Renal Failure"] is False and out["Kidney Failure From Labs"] is False
    assert out["CKD Stage 3 Context"] is True
    assert out["Kidney Failure Evidence"] == []
    calciphylaxis = out["Calciphylaxis"]["rationale"]
    assert "Kidney failure / dialysis" not in calciphylaxis
    assert ("Chronic kidney disease without kidney failure: Chronic kidney disease stage 3 (disorder), a risk context, "
            "not kidney failure; no ESRD, CKD stage 5 or dialysis found among the conditions and procedures read, and the latest eGFR is not below 15 "
            "mL/min/1.73 m2 (eGFR 48 mL/min/1.73 m2 on 2026-11-10 (L), KDIGO 2012 category G3a). ") in calciphylaxis
    assert "CKD stage 3 is a risk context, not the chronic kidney failure the source names" \
        in out["Metastatic"]["rationale"]


def test_an_egfr_in_the_stage_3_range_without_a_code_is_context_too():
    out = evaluate(Facts([calcium("9.4"), phosphate("3.6"), egfr("38", "L", days_ago=5)], woman_aged_60_on_2026_11_10()))
    assert out["CKD Stage 3 Context"] is True and out["Has Renal Failure"] is False
    assert "eGFR 38 mL/min/1.73 m2 on 2026-11-10 (L), KDIGO 2012 category G3b" in out["Calciphylaxis"]["rationale"]


def test_nothing_found_says_what_was_looked_for():
    out = evaluate(Facts([calcium("9.4"), phosphate("3.6")], woman_aged_60_on_2026_11_10()))
    assert ("No chronic kidney disease stage 3 to 5, ESRD or dialysis found among the conditions and procedures read, and no usable eGFR or creatinine result within 1 year."
            in out["Calciphylaxis"]["rationale"])
    assert out["CKD Stage 3 Context"] is False and out["Kidney Failure Evidence"] == []


# ---- terminology and value sets for body height ---------------------------------------------------------

def test_body_height_is_matched_by_code_and_name_and_says_so_in_its_terminology_entry():
    from service.terminology import LOINC, load_terminology

    terminology = load_terminology()
    row = terminology.analyte_for(LOINC, "8302-2")
    assert row is not None and row.analyte == "body-height"
    assert row.mark == "U" and row.match_names == ("height",)
    assert "name" in row.source and row.source.startswith("U (") and "FHIR R4 Body Height profile" in row.source
    assert terminology.convert("body-height", Decimal("50"), "[in_i]") == Decimal("127.00")
    assert terminology.convert("body-height", Decimal("1.3"), "m") == Decimal("130.0")
    library = (PROJECT_ROOT / "service" / "knowledge" / "CalcinosisCutis.cql").read_text(encoding="utf-8")
    assert "define \"Body Height Names\": { 'height' }" in library
    valueset = json.loads((PROJECT_ROOT / "service" / "knowledge" / "valuesets" / "body-height.json").read_text())
    assert [c["code"] for c in valueset["expansion"]["contains"]] == ["8302-2"]
    assert "name" in valueset["description"] and "FHIR" in valueset["description"]


def test_the_loader_refuses_a_code_marked_unverified_without_a_name_to_match(tmp_path):
    import shutil

    from service.terminology import TerminologyDataError, load_terminology

    source = PROJECT_ROOT / "service" / "terminology"
    for path in source.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    data = json.loads((tmp_path / "analytes.json").read_text())
    row = next(r for r in data["codes"] if r["code"] == "8302-2")
    del row["match_names"]
    (tmp_path / "analytes.json").write_text(json.dumps(data))
    with pytest.raises(TerminologyDataError, match="8302-2"):
        load_terminology(tmp_path)


# ---- end to end: a FHIR Bundle through the whole service ----------------------------------------------

def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r} for r in resources]}


def _observation(resource_id: str, code: str, display: str, value: float, unit: str, when: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": resource_id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


def _risk_assessment(bundle: dict[str, Any]) -> dict[str, Any]:
    from fhir.resources.R4B.bundle import Bundle

    from conftest import FIXTURE_NOW
    from service.pipeline.assess import assess_bundle
    from service.fhir_outputs.result_bundle import build_result_bundle

    run = assess_bundle(bundle, now=FIXTURE_NOW)
    result = build_result_bundle(run.patients, run.issues)
    Bundle.model_validate(result)  # valid FHIR R4
    return next(e["resource"] for e in result["entry"] if e["resource"]["resourceType"] == "RiskAssessment")


def test_a_bundle_with_only_a_creatinine_gets_a_risk_assessment_naming_the_computed_egfr():
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1966-05-01", "gender": "female"}
    risk = _risk_assessment(_bundle(
        patient,
        _observation("cr", "2160-0", "Creatinine [Mass/volume] in Serum or Plasma", 7.24, "mg/dL", "2026-11-10T08:00:00Z"),
        _observation("p", "2777-1", "Phosphate [Mass/volume] in Serum or Plasma", 8.0, "mg/dL", "2026-11-10T08:00:00Z"),
        _observation("ca", "17861-6", "Calcium [Mass/volume] in Serum or Plasma", 9.8, "mg/dL", "2026-11-10T08:00:00Z")))
    rationales = {p["outcome"]["coding"][0]["code"]: p["rationale"] for p in risk["prediction"]}
    computed = "eGFR 6 mL/min/1.73 m2 computed from creatinine 7.24 mg/dL on 2026-11-10 (CKD-EPI 2021)"
    assert computed in rationales["metastatic"]
    assert "Kidney failure / dialysis: " + computed in rationales["calciphylaxis"]
    assert {"reference": "urn:uuid:Observation-cr"} in risk["basis"]  # the creatinine the eGFR was computed from


def test_a_child_height_sent_in_inches_is_converted_and_used_end_to_end():
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "2016-03-01", "gender": "male"}
    risk = _risk_assessment(_bundle(
        patient,
        _observation("cr", "2160-0", "Creatinine [Mass/volume] in Serum or Plasma", 4.1, "mg/dL", "2026-11-10T08:00:00Z"),
        _observation("ht", "8302-2", "Body height", 51.18, "[in_i]", "2026-10-16T08:00:00Z")))
    text = " ".join(p["rationale"] for p in risk["prediction"])
    assert ("eGFR 13 mL/min/1.73 m2 computed from creatinine 4.1 mg/dL on 2026-11-10 and height 130 cm on 2026-10-16 "
            "(bedside Schwartz)") in text


@pytest.mark.parametrize("patient_record, records", [
    (person(date(2027, 1, 1), "female"), [creatinine("2.0", days_ago=5)]),             # born after the result
    (person(date(1966, 5, 1), "female"), [creatinine("0", days_ago=5)]),               # no creatinine can be zero
    (person(date(1966, 5, 1), "female"), [creatinine("-1.2", days_ago=5)]),
    (person(date(1966, 5, 1), "female"), [egfr("-3", days_ago=5)]),                     # no eGFR can be negative
    (person(date(1966, 5, 1), "female"), [creatinine("0.00000001", "L", days_ago=5)]),
    (person(date(2016, 3, 1), "male"), [creatinine("1.0", days_ago=5), height("0", days_ago=5)]),
    (None, [creatinine("7.24", days_ago=5), egfr("9", days_ago=400)]),
])
def test_impossible_values_never_make_kidney_failure_and_never_fail(patient_record, records):
    out = evaluate(Facts(records, patient_record))
    assert out["Kidney Failure From Labs"] is False
    assert out["Has Renal Failure"] is False
    assert isinstance(out["Calciphylaxis"]["rationale"], str) and isinstance(out["Metastatic"]["rationale"], str)


def test_a_creatinine_dated_before_the_birth_date_says_so():
    out = evaluate(Facts([creatinine("2.0", days_ago=5)], person(date(2027, 1, 1), "female")))
    assert "No eGFR computed from creatinine 2 mg/dL on 2026-11-10: it is dated before the birth date." in out["Notes"]


def test_a_long_kidney_history_is_read_in_linear_time():
    # 1,500 creatinine and 1,500 eGFR results: a search per row (quadratic) took about a minute here.
    import time

    records = []
    for i in range(1500):
        records += [creatinine(f"1.{i % 9 + 1}", days_ago=5 + 3 * i), egfr(str(40 + i % 30), days_ago=6 + 3 * i)]
    evaluate(Facts([], None))  # the library is compiled once, outside the timing
    start = time.perf_counter()
    out = evaluate(Facts(records, woman_aged_60_on_2026_11_10()))
    assert time.perf_counter() - start < 15
    assert out["Kidney Failure From Labs"] is False


# ---- bounded kidney results ----------------------------------------------------------------

def _bounded(record, comparator):
    record.fields["comparator"] = comparator
    return record


def test_a_reported_egfr_below_15_as_a_bound_is_kidney_failure():
    out = evaluate(Facts([
        _bounded(obs("33914-3", "15", "mL/min/{1.73_m2}", "L", days_ago=5), "<"),
        calcium("9.0"), phosphate("6.2", "H"),
    ], patient()))
    assert grades(out)["metastatic"] == "high"
    assert "eGFR below 15 mL/min/1.73 m2" in out["Metastatic"]["rationale"]


def test_a_reported_egfr_above_60_as_a_bound_is_not_kidney_failure():
    out = evaluate(Facts([
        _bounded(obs("33914-3", "60", "mL/min/{1.73_m2}", "N", days_ago=5), ">"),
        calcium("9.0"), phosphate("6.2", "H"),
    ], patient()))
    assert grades(out)["metastatic"] == "moderate"
    assert "above 60" in out["Calciphylaxis"]["rationale"]


def test_no_egfr_is_computed_from_a_bounded_creatinine():
    out = evaluate(Facts([
        _bounded(obs("2160-0", "0.3", "mg/dL", "L", days_ago=5), "<"),
        calcium("9.0"), phosphate("3.5"),
    ], patient()))
    assert not any(v["analyte"] == "egfr" for v in out["Values Used"])


def test_no_egfr_is_computed_for_a_patient_on_dialysis_and_the_note_says_why():
    out = evaluate(Facts([
        condition(ICD10CM, "Z99.2", "Dependence on renal dialysis"),
        obs("2160-0", "7.9", "mg/dL", "H", days_ago=6),
        calcium("10.8", "H"), phosphate("7.6", "H"),
    ], patient()))
    assert not any(v["analyte"] == "egfr" for v in out["Values Used"])
    assert "computed from creatinine" not in out["Metastatic"]["rationale"]
    assert any("on dialysis" in note and "creatinine-based equations" in note for note in out["Notes"])
    assert grades(out)["metastatic"] == "high"  # kidney failure is coded: dialysis
