"""What the record supports: how certain a diagnosis is, how strong a drug exposure is, and the
metastatic threshold of the source.

Each test is a clinical story run through the rule library: a rule-out is not a diagnosis, a
family history is not the patient's disease, an order never given is not an exposure, and
metastatic calcification is graded high only when the product exceeds 70 mg2/dL2 or kidney
failure accompanies abnormal minerals.
"""

from __future__ import annotations

from test_knowledge_scenarios import (
    ICD10CM, SNOMED, Facts, assess, calcium, condition, grades, leading, medication, patient, phosphate,
)  # noqa: F401  (assess is the rule-library fixture)

IV_ROUTE_TEXT = "Intravenous route"


# ---- certainty of a diagnosis ---------------------------------------------------------------

def test_a_rule_out_of_calciphylaxis_is_a_suspicion_graded_at_most_moderate(assess):
    out = assess(Facts([
        condition(SNOMED, "237900002", "Calciphylaxis", verification="differential"),
        calcium("9.2"), phosphate("4.1"),
    ], patient()))
    assert grades(out)["calciphylaxis"] == "moderate"
    rationale = out["Calciphylaxis"]["rationale"]
    assert "Calciphylaxis (suspected, not confirmed)" in rationale
    assert "Calciphylaxis is on file" not in rationale


def test_a_confirmed_calciphylaxis_is_still_high(assess):
    out = assess(Facts([condition(SNOMED, "237900002", "Calciphylaxis"), calcium("9.2"), phosphate("4.1")], patient()))
    assert grades(out)["calciphylaxis"] == "high"
    assert "suspected" not in out["Calciphylaxis"]["rationale"]


def test_a_provisional_dermatomyositis_with_normal_minerals_is_dystrophic_moderate_not_high(assess):
    out = assess(Facts([
        condition(SNOMED, "396230008", "Dermatomyositis (disorder)", verification="provisional"),
        calcium("9.3", low="8.5", high="10.2"), phosphate("3.6", low="2.5", high="4.5"),
    ], patient()))
    assert grades(out)["dystrophic"] == "moderate"
    assert "Dermatomyositis (disorder) (suspected, not confirmed)" in out["Dystrophic"]["rationale"]


def test_an_unconfirmed_connective_tissue_disease_keeps_idiopathic_from_being_high(assess):
    out = assess(Facts([
        condition(ICD10CM, "L94.2", "Calcinosis cutis"),
        condition(SNOMED, "89155008", "Systemic sclerosis (disorder)", verification="unconfirmed"),
        calcium("9.3"), phosphate("3.6"),
    ], patient()))
    assert grades(out)["idiopathic"] in ("low", "negligible")
    assert "suspected, not confirmed" in out["Idiopathic"]["rationale"]


def test_an_entered_in_error_diagnosis_never_counts(assess):
    out = assess(Facts([
        condition(SNOMED, "237900002", "Calciphylaxis", verification="entered-in-error"),
        calcium("9.2"), phosphate("4.1"),
    ], patient()))
    assert grades(out)["calciphylaxis"] == "negligible"
    assert "Calciphylaxis" not in out["Calciphylaxis"]["rationale"].split(".")[0]


def test_a_resolved_systemic_sclerosis_is_not_active_tissue_damage(assess):
    out = assess(Facts([
        condition(SNOMED, "89155008", "Systemic sclerosis (disorder)", clinical="resolved"),
        calcium("9.3"), phosphate("3.6"),
    ], patient()))
    assert grades(out)["dystrophic"] == "low"


def test_a_family_history_of_lupus_is_not_the_patients_lupus(assess):
    out = assess(Facts([
        condition(None, None, "Family history of systemic lupus erythematosus"),
        calcium("9.3"), phosphate("3.6"),
    ], patient()))
    assert grades(out)["dystrophic"] == "low"
    assert "lupus" not in out["Dystrophic"]["rationale"].lower()


def test_a_condition_in_the_family_history_category_is_not_the_patients_disease(assess):
    out = assess(Facts([
        condition(ICD10CM, "M34.9", "Systemic sclerosis, unspecified", category="family history"),
        calcium("9.3"), phosphate("3.6"),
    ], patient()))
    assert grades(out)["dystrophic"] == "low"


def test_a_family_history_code_z83_3_is_not_diabetes(assess):
    out = assess(Facts([
        condition(ICD10CM, "N18.6", "End stage renal disease"),
        condition(None, None, "Necrosis of skin of abdominal wall"),
        condition(ICD10CM, "Z83.3", "Family history of diabetes mellitus"),
        calcium("9.0"), phosphate("4.4"),
    ], patient()))
    # ESRD with skin necrosis but no risk factor: moderate, not the high a diabetic patient gets.
    assert grades(out)["calciphylaxis"] == "moderate"
    assert "Family history of diabetes mellitus" not in out["Calciphylaxis"]["rationale"]


def test_a_diagnosis_without_verification_status_counts_and_a_note_says_so(assess):
    out = assess(Facts([
        condition(ICD10CM, "M34.1", "CR(E)ST syndrome", verification=None),
        calcium("9.3", low="8.5", high="10.2"), phosphate("3.6", low="2.5", high="4.5"),
    ], patient()))
    assert grades(out)["dystrophic"] == "high"
    assert any("CR(E)ST syndrome" in note and "no verification status" in note for note in out["Notes"])


# ---- exposure, graded by evidence -----------------------------------------------------------

def test_an_iv_calcium_order_never_given_is_a_weak_exposure_graded_low(assess):
    out = assess(Facts([
        medication("MedicationRequest", "calcium gluconate 100 mg/ml injection", "active", route=IV_ROUTE_TEXT),
        calcium("9.1"), phosphate("3.9"),
    ], patient()))
    assert grades(out)["iatrogenic"] == "low"
    assert "ordered, no administration recorded" in out["Iatrogenic"]["rationale"]


def test_an_iv_calcium_dose_given_last_week_is_a_strong_exposure_graded_high(assess):
    out = assess(Facts([
        medication("MedicationAdministration", "calcium gluconate 100 mg/ml injection", "completed", days_ago=7,
                   route=IV_ROUTE_TEXT),
        calcium("9.1"), phosphate("3.9"),
    ], patient()))
    assert grades(out)["iatrogenic"] == "high"
    assert "given within 90 days" in out["Iatrogenic"]["rationale"]


def test_a_single_dose_eleven_months_ago_does_not_outrank_a_textbook_dystrophic_picture(assess):
    out = assess(Facts([
        medication("MedicationAdministration", "calcium gluconate 100 mg/ml injection", "completed", days_ago=330,
                   route=IV_ROUTE_TEXT),
        condition(ICD10CM, "M34.1", "CR(E)ST syndrome"),
        calcium("9.3", low="8.5", high="10.2"), phosphate("3.6", low="2.5", high="4.5"),
    ], patient()))
    assert grades(out)["iatrogenic"] == "low"
    assert leading(out) == "dystrophic"
    assert "more than 90 days ago" in out["Iatrogenic"]["rationale"]


def test_calcium_gluconate_given_with_no_route_recorded_is_possible_iv_exposure(assess):
    out = assess(Facts([
        medication("MedicationAdministration", "calcium gluconate", "completed", days_ago=3),
        calcium("9.1"), phosphate("3.9"),
    ], patient()))
    assert grades(out)["iatrogenic"] == "moderate"
    rationale = out["Iatrogenic"]["rationale"]
    assert "route not recorded" in rationale
    assert "No intravenous calcium" not in rationale


def test_oral_calcium_gluconate_tablets_are_still_not_an_iv_exposure(assess):
    out = assess(Facts([
        medication("MedicationAdministration", "calcium gluconate 650 mg oral tablet", "completed", days_ago=3),
        calcium("9.1"), phosphate("3.9"),
    ], patient()))
    assert grades(out)["iatrogenic"] == "negligible"


def test_para_aminosalicylic_acid_being_taken_is_a_strong_exposure(assess):
    out = assess(Facts([
        medication("MedicationStatement", "aminosalicylic acid 4000 mg delayed release oral granules", "active",
                   days_ago=200),
        calcium("9.4"), phosphate("3.4"),
    ], patient()))
    assert grades(out)["iatrogenic"] == "high"


def test_tumor_lysis_does_not_outrank_a_confirmed_connective_tissue_disease_with_normal_minerals(assess):
    out = assess(Facts([
        condition(ICD10CM, "E88.3", "Tumor lysis syndrome"),
        condition(ICD10CM, "M34.1", "CR(E)ST syndrome"),
        calcium("9.3", low="8.5", high="10.2"), phosphate("3.6", low="2.5", high="4.5"),
    ], patient()))
    assert grades(out)["dystrophic"] == "high"
    assert grades(out)["iatrogenic"] == "moderate"
    assert leading(out) == "dystrophic"


def test_tumor_lysis_alone_keeps_its_high_grade(assess):
    out = assess(Facts([condition(ICD10CM, "E88.3", "Tumor lysis syndrome"), calcium("9.0"), phosphate("6.1", "H")],
                       patient()))
    assert grades(out)["iatrogenic"] == "high"


# ---- metastatic by the source's threshold ---------------------------------------------------

def test_ckd_stage_3_with_a_high_phosphate_below_70_is_moderate_not_high(assess):
    out = assess(Facts([
        condition(SNOMED, "433144002", "Chronic kidney disease stage 3 (disorder)"),
        calcium("9.0"), phosphate("5.2", "H"),
    ], patient()))
    assert grades(out)["metastatic"] == "moderate"
    assert "Ca x P 46.8 mg2/dL2 does not exceed 70 mg2/dL2" in out["Metastatic"]["rationale"]


def test_hyperparathyroidism_with_a_high_calcium_below_70_is_moderate(assess):
    out = assess(Facts([
        condition(SNOMED, "36348003", "Primary hyperparathyroidism (disorder)"),
        calcium("11.2", "H"), phosphate("2.9"),
    ], patient()))
    assert grades(out)["metastatic"] == "moderate"
    assert "Primary hyperparathyroidism" in out["Metastatic"]["rationale"]


def test_a_product_above_70_with_a_high_phosphate_is_high_without_a_listed_cause(assess):
    out = assess(Facts([calcium("10.1"), phosphate("7.4", "H")], patient()))
    assert grades(out)["metastatic"] == "high"
    assert "Ca x P 74.7 mg2/dL2 exceeds 70 mg2/dL2" in out["Metastatic"]["rationale"]


def test_kidney_failure_with_a_high_phosphate_is_high_below_70(assess):
    out = assess(Facts([
        condition(ICD10CM, "N18.6", "End stage renal disease"),
        calcium("8.9"), phosphate("6.0", "H"),
    ], patient()))
    assert grades(out)["metastatic"] == "high"


def test_ckd_stage_3_is_named_as_context_not_as_a_cause(assess):
    out = assess(Facts([
        condition(SNOMED, "433144002", "Chronic kidney disease stage 3 (disorder)"),
        calcium("9.0"), phosphate("3.5"),
    ], patient()))
    rationale = out["Metastatic"]["rationale"]
    assert grades(out)["metastatic"] == "negligible"
    assert "Causes of metastatic calcinosis" not in rationale


def test_a_suspected_calcinosis_cutis_keeps_idiopathic_at_moderate(assess):
    out = assess(Facts([
        condition(ICD10CM, "L94.2", "Calcinosis cutis", verification="provisional"),
        calcium("9.6"), phosphate("3.8"),
    ], patient()))
    assert grades(out)["idiopathic"] == "moderate"
    assert "Calcinosis cutis (suspected, not confirmed)" in out["Idiopathic"]["rationale"]


def test_a_confirmed_calcinosis_cutis_with_normal_labs_and_no_cause_is_idiopathic_high(assess):
    out = assess(Facts([condition(ICD10CM, "L94.2", "Calcinosis cutis"), calcium("9.6"), phosphate("3.8")], patient()))
    assert grades(out)["idiopathic"] == "high"


# ---- from FHIR JSON: statuses and categories reach the rules ---------------------------------

def test_a_fhir_rule_out_and_a_family_history_condition_are_read_as_such_end_to_end():
    from fhir.resources.R4B.riskassessment import RiskAssessment

    from service.pipeline.assess import assess_bundle
    from service.fhir_outputs.result_bundle import build_result_bundle
    from test_knowledge_scenarios import NOW

    def entry(resource: dict) -> dict:
        return {"fullUrl": f"http://example.org/fhir/{resource['resourceType']}/{resource['id']}", "resource": resource}

    def coded(system: str, code: str, display: str) -> dict:
        return {"coding": [{"system": system, "code": code, "display": display}], "text": display}

    status = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
    clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    rule_out = {
        "resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {"coding": [{"system": clinical, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": status, "code": "differential"}]},
        "code": coded("http://snomed.info/sct", "237900002", "Calciphylaxis"),
    }
    family = {
        "resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {"coding": [{"system": clinical, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": status, "code": "confirmed"}]},
        "category": [{"text": "Family history"}],
        "code": coded("http://snomed.info/sct", "89155008", "Systemic sclerosis"),
    }
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        entry({"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01", "gender": "female"}),
        entry(rule_out), entry(family)]}
    run = assess_bundle(bundle, now=NOW)
    patient_result = run.patients[0]
    by_type = {g.type: g for g in patient_result.grades}
    assert by_type["calciphylaxis"].risk == "moderate"
    assert "suspected, not confirmed" in by_type["calciphylaxis"].rationale
    assert "Systemic sclerosis" not in by_type["dystrophic"].rationale
    risk = next(e["resource"] for e in build_result_bundle(run.patients, run.issues)["entry"]
                if e["resource"]["resourceType"] == "RiskAssessment")
    RiskAssessment.model_validate(risk)
    calciphylaxis = next(p for p in risk["prediction"] if p["outcome"]["coding"][0]["code"] == "calciphylaxis")
    assert calciphylaxis["qualitativeRisk"]["coding"][0]["code"] == "moderate"


def test_an_active_order_is_named_once_and_a_draft_order_as_not_yet_signed(assess):
    out = assess(Facts([
        medication("MedicationRequest", "calcium gluconate 100 mg/ml injection", "active", route=IV_ROUTE_TEXT),
        medication("MedicationRequest", "calcium chloride 100 mg/ml injectable solution", "draft"),
        calcium("9.1"), phosphate("3.9"),
    ], patient()))
    rationale = out["Iatrogenic"]["rationale"]
    assert rationale.count("calcium gluconate 100 mg/ml injection") == 1
    assert "; draft order, not yet signed: calcium chloride 100 mg/ml injectable solution." in rationale
    assert grades(out)["iatrogenic"] == "low"


# ---- a diagnosis recorded as text only -------------------------------------------------------

import pytest  # noqa: E402


@pytest.mark.parametrize(("name", "type_code", "expected"), [
    ("Systemic lupus erythematosus", "dystrophic", "high"),
    ("Systemic sclerosis", "dystrophic", "high"),
    ("Rheumatoid arthritis", "dystrophic", "high"),
    ("Dermatomyositis", "dystrophic", "high"),
    ("Pseudoxanthoma elasticum", "dystrophic", "high"),
    ("Calciphylaxis", "calciphylaxis", "high"),
    ("Sarcoidosis", "metastatic", "low"),
])
def test_a_verified_diagnosis_recorded_as_text_only_counts_by_its_exact_name(assess, name, type_code, expected):
    out = assess(Facts([condition(None, None, name), calcium("9.3", low="8.5", high="10.2"),
                        phosphate("3.6", low="2.5", high="4.5")], patient()))
    assert grades(out)[type_code] == expected


def test_text_only_type_2_diabetes_is_a_calciphylaxis_risk_factor(assess):
    out = assess(Facts([
        condition(ICD10CM, "N18.6", "End stage renal disease"),
        condition(None, None, "Necrosis of skin of abdominal wall"),
        condition(None, None, "Type 2 diabetes mellitus"),
        calcium("9.0"), phosphate("4.4"),
    ], patient()))
    assert grades(out)["calciphylaxis"] == "high"


def test_end_stage_renal_disease_typed_as_text_is_kidney_failure(assess):
    out = assess(Facts([condition(None, None, "End stage renal disease"), calcium("8.9"), phosphate("6.0", "H")],
                       patient()))
    assert grades(out)["metastatic"] == "high"


def test_a_suspected_esrd_is_named_but_is_not_kidney_failure(assess):
    out = assess(Facts([
        condition(ICD10CM, "N18.6", "End stage renal disease", verification="provisional"),
        calcium("8.9"), phosphate("6.0", "H"),
    ], patient()))
    # A high phosphate with a Ca x P of 53.4 and no confirmed kidney failure: moderate, not high.
    assert grades(out)["metastatic"] == "moderate"


# ---- a past burn, and causes that may sit among records not read -----------------------------

def test_a_burn_recorded_as_resolved_is_past_tissue_damage_for_dystrophic_calcinosis(assess):
    out = assess(Facts([
        condition(ICD10CM, "T22.211A", "Burn of second degree of right forearm, initial encounter", clinical="resolved"),
        calcium("9.3", low="8.5", high="10.2"), phosphate("3.6", low="2.5", high="4.5"),
    ], patient()))
    assert grades(out)["dystrophic"] == "high"
    assert "Burn of second degree of right forearm, initial encounter (resolved)" in out["Dystrophic"]["rationale"]


def test_a_resolved_lupus_is_not_past_tissue_damage(assess):
    out = assess(Facts([
        condition(ICD10CM, "M32.9", "Systemic lupus erythematosus, unspecified", clinical="resolved"),
        calcium("9.3"), phosphate("3.6"),
    ], patient()))
    assert grades(out)["dystrophic"] == "low"


def test_idiopathic_is_not_high_when_the_condition_search_was_read_only_in_part(assess):
    from test_clinical_incomplete_data import data_gap

    out = assess(Facts([
        condition(ICD10CM, "L94.2", "Calcinosis cutis"), calcium("9.6"), phosphate("3.8"),
        data_gap("Condition", location="prefetch.conditions"),
    ], patient()))
    assert grades(out)["idiopathic"] == "moderate"
    assert "another cause may be among the records not read" in out["Idiopathic"]["rationale"]
