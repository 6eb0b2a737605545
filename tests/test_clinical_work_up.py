"""The work-up the sources name beyond the laboratory: imaging and skin biopsy, no 24-hour urine
for a patient whose kidneys have failed, and serology only for lupus or systemic sclerosis still
to be diagnosed.

StatPearls "Calcinosis Cutis" (Le C, Bedocs PM, 2019), Evaluation: "Laboratory studies and imaging
should be done to evaluate the condition and the extent of the disease as well as the possible
etiology." ... "Antinuclear antibodies (ANA), anti-dsDNA, and anti-ENA for lupus and systemic
sclerosis." ... "Other studies should include x-ray, skin ultrasound, bone scintigraphy, CT and MRI,
and skin biopsy."
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from test_knowledge_scenarios import (ICD10CM, LOINC, SNOMED, Facts, assess, calcium, condition, grades,  # noqa: F401
                                      obs, patient, phosphate, procedure, recommended_codes, service_request)

NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)
IMAGING_CODES = ["168537006", "16310003", "77477000", "113091000"]  # plain X-ray, ultrasound, CT, MRI
SKIN_BIOPSY = "240977001"
URINE_24H = ["6874-2", "2779-7"]
SEROLOGY = ["8061-4", "5130-0", "43119-7"]
BONE_SCAN_TEXT = "Bone scintigraphy (bone scan)"
BONE_SCAN_NAME = "Bone scintigraphy"  # its plain name, the text of a ServiceRequest for it


def imaging(out: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in out["Recommended Tests"] if t["group"] == "imaging"]


def not_proposed(out: dict[str, Any]) -> dict[str, str]:
    return {t["code"] or t["display"]: t["reason"] for t in out["Tests Not Proposed"]}


def calcinosis(verification: str = "confirmed") -> Any:
    return condition(ICD10CM, "L94.2", "Calcinosis cutis", verification=verification)


def normal_minerals() -> list[Any]:
    return [calcium("9.4", low="8.5", high="10.2"), phosphate("3.5", low="2.5", high="4.5")]


# ---- imaging and skin biopsy -----------------------------------------------------------------

def test_calcinosis_on_file_proposes_imaging_for_the_extent_and_a_skin_biopsy(assess):
    out = assess(Facts([calcinosis(), *normal_minerals()], patient()))
    proposed = imaging(out)
    assert [t["code"] for t in proposed] == [*IMAGING_CODES, None, SKIN_BIOPSY]
    assert all(t["system"] == SNOMED for t in proposed if t["code"])
    by_code = {t["code"]: t for t in proposed}
    assert by_code["168537006"]["display"] == "Plain X-ray"
    assert "extent of the disease" in by_code["77477000"]["reason"]
    assert "calcinosis cutis recorded: Calcinosis cutis" in by_code["77477000"]["reason"]
    assert "definitive diagnosis" in by_code[SKIN_BIOPSY]["reason"]
    assert "von Kossa" in by_code[SKIN_BIOPSY]["reason"]


def test_bone_scintigraphy_is_proposed_by_name_only_since_its_code_is_not_verified(assess):
    out = assess(Facts([calcinosis(), *normal_minerals()], patient()))
    (bone_scan,) = [t for t in imaging(out) if t["code"] is None]
    assert bone_scan["system"] is None
    assert bone_scan["display"] == BONE_SCAN_TEXT
    assert "no verified SNOMED CT code" in bone_scan["reason"]


def test_imaging_rests_on_the_evaluation_section_and_the_biopsy_on_the_histology(assess):
    out = assess(Facts([calcinosis(), *normal_minerals()], patient()))
    by_code = {t["code"]: t for t in imaging(out)}
    ct_sections = {(c["source"], c["section"]) for c in by_code["77477000"]["citation"]}
    assert ("statpearls-calcinosis-cutis", "Evaluation") in ct_sections
    biopsy = by_code[SKIN_BIOPSY]["citation"]
    assert ("statpearls-calcinosis-cutis", "Histopathology") in {(c["source"], c["section"]) for c in biopsy}
    assert any("definitive diagnosis" in c["quote"] for c in biopsy)


def test_a_suspected_calcinosis_also_proposes_the_imaging_and_says_it_is_not_confirmed(assess):
    out = assess(Facts([calcinosis("provisional"), *normal_minerals()], patient()))
    proposed = imaging(out)
    assert SKIN_BIOPSY in [t["code"] for t in proposed]
    assert "Calcinosis cutis (suspected, not confirmed)" in proposed[0]["reason"]


@pytest.mark.parametrize("verification", ["differential", "unconfirmed"])
def test_a_differential_or_unconfirmed_calcinosis_counts_as_suspected(assess, verification):
    out = assess(Facts([calcinosis(verification), *normal_minerals()], patient()))
    assert [t["code"] for t in imaging(out)] == [*IMAGING_CODES, None, SKIN_BIOPSY]


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_a_refuted_calcinosis_proposes_no_imaging(assess, verification):
    out = assess(Facts([calcinosis(verification), *normal_minerals()], patient()))
    assert imaging(out) == []


def test_without_calcinosis_on_file_no_imaging_or_biopsy_is_proposed(assess):
    out = assess(Facts([*normal_minerals()], patient()))
    assert imaging(out) == []
    assert not any(t["group"] == "imaging" for t in out["Tests Not Proposed"])


def test_a_skin_biopsy_done_is_not_proposed_again_and_the_plan_says_when_it_was_done(assess):
    out = assess(Facts([calcinosis(), *normal_minerals(), procedure(SKIN_BIOPSY, "Biopsy of skin", days_ago=20)],
                       patient()))
    assert SKIN_BIOPSY not in recommended_codes(out)
    assert not_proposed(out)[SKIN_BIOPSY] == "already done: Biopsy of skin (Procedure completed, 2026-10-26)"
    assert "77477000" in recommended_codes(out)


def test_a_skin_pathology_report_on_file_means_the_biopsy_was_done(assess):
    report = obs("65754-4", None, "1", None, value_text="Dermal calcium deposits, von Kossa positive", days_ago=15)
    out = assess(Facts([calcinosis(), *normal_minerals(), report], patient()))
    assert SKIN_BIOPSY not in recommended_codes(out)
    assert not_proposed(out)[SKIN_BIOPSY] == "skin pathology report on file (2026-10-31)"


def test_a_biopsy_still_in_progress_is_not_a_biopsy_done(assess):
    out = assess(Facts([calcinosis(), *normal_minerals(),
                        procedure(SKIN_BIOPSY, "Biopsy of skin", status="in-progress", days_ago=1)], patient()))
    assert SKIN_BIOPSY in recommended_codes(out)


def test_imaging_done_before_the_lookback_window_is_proposed_again(assess):
    out = assess(Facts([calcinosis(), *normal_minerals(), procedure("77477000", "CT scan", days_ago=800)], patient()))
    assert "77477000" in recommended_codes(out)


def test_an_open_order_for_an_imaging_study_is_listed_as_ordered_not_proposed(assess):
    out = assess(Facts([calcinosis(), *normal_minerals(),
                        service_request("113091000", "active", system=SNOMED, display="MRI of both hands")], patient()))
    assert "113091000" not in recommended_codes(out)
    mri = next(t for t in out["Available Tests"] if t["code"] == "113091000")
    assert mri["summary"] == "already ordered (ServiceRequest active, 2026-11-14)"


def test_an_open_bone_scan_order_named_without_a_verified_code_is_not_proposed_again(assess):
    out = assess(Facts([calcinosis(), *normal_minerals(),
                        service_request(None, "draft", system=SNOMED, display="Whole body bone scan")], patient()))
    assert BONE_SCAN_TEXT not in [t["display"] for t in out["Recommended Tests"]]
    bone_scan = next(t for t in out["Available Tests"] if t["display"] == BONE_SCAN_TEXT)
    assert bone_scan["summary"] == "already ordered (ServiceRequest draft, 2026-11-14)"


# ---- no 24-hour urine when the kidneys have failed --------------------------------------------

def test_a_patient_on_haemodialysis_gets_no_24_hour_urine_collection_and_the_plan_says_why(assess):
    out = assess(Facts([condition(ICD10CM, "N18.6", "End stage renal disease"),
                        procedure("302497006", "Hemodialysis", days_ago=2), *normal_minerals()], patient()))
    for code in URINE_24H:
        assert code not in recommended_codes(out)
        reason = not_proposed(out)[code]
        assert reason.startswith("kidney failure or dialysis on file (End stage renal disease, Hemodialysis)")
        assert "little or no urine" in reason
    assert "17861-6" not in recommended_codes(out)  # calcium is on file
    assert "2731-8" in recommended_codes(out)  # the rest of the baseline is still proposed


def test_ckd_stage_5_alone_is_kidney_failure_and_leaves_out_the_24_hour_urine(assess):
    out = assess(Facts([condition(SNOMED, "433146000", "Chronic kidney disease stage 5 (disorder)")], patient()))
    assert not set(URINE_24H) & set(recommended_codes(out))
    assert set(URINE_24H) <= set(not_proposed(out))


def test_chronic_kidney_disease_stage_3_is_not_kidney_failure_so_the_24_hour_urine_stays(assess):
    out = assess(Facts([condition(ICD10CM, "N18.30", "Chronic kidney disease, stage 3 unspecified"),
                        *normal_minerals()], patient()))
    assert set(URINE_24H) <= set(recommended_codes(out))
    assert not set(URINE_24H) & set(not_proposed(out))


def test_a_24_hour_urine_already_on_file_stays_listed_as_available_for_a_dialysis_patient(assess):
    urine = obs("6874-2", "80", "mg/(24.h)", "N", days_ago=40)
    out = assess(Facts([condition(ICD10CM, "Z99.2", "Dependence on renal dialysis"), urine], patient()))
    assert "6874-2" in [t["code"] for t in out["Available Tests"]]
    assert "6874-2" not in not_proposed(out)
    assert "2779-7" in not_proposed(out)


# ---- serology for lupus or systemic sclerosis still to be diagnosed ---------------------------

def test_established_systemic_sclerosis_does_not_re_propose_the_serology_and_says_why(assess):
    out = assess(Facts([condition(ICD10CM, "M34.1", "CR(E)ST syndrome"), calcinosis(), *normal_minerals()], patient()))
    assert grades(out)["dystrophic"] == "high"
    assert not set(SEROLOGY) & set(recommended_codes(out))
    reason = not_proposed(out)["8061-4"]
    assert reason.startswith("lupus or systemic sclerosis already established: CR(E)ST syndrome")
    assert set(SEROLOGY) <= set(not_proposed(out))


def test_established_sle_does_not_re_propose_the_serology(assess):
    out = assess(Facts([condition(SNOMED, "55464009", "Systemic lupus erythematosus (disorder)"), *normal_minerals()],
                       patient()))
    assert not set(SEROLOGY) & set(recommended_codes(out))


@pytest.mark.parametrize("verification", ["provisional", "differential", "unconfirmed"])
def test_suspected_lupus_proposes_the_serology_as_suspected_not_confirmed(assess, verification):
    out = assess(Facts([condition(SNOMED, "55464009", "Systemic lupus erythematosus (disorder)",
                                  verification=verification), *normal_minerals()], patient()))
    assert set(SEROLOGY) <= set(recommended_codes(out))
    ana = next(t for t in out["Recommended Tests"] if t["code"] == "8061-4")
    assert ana["reason"] == ("Antinuclear antibodies for lupus and systemic sclerosis: "
                             "Systemic lupus erythematosus (disorder) (suspected, not confirmed).")
    assert [(c["source"], c["section"]) for c in ana["citation"]] == [("statpearls-calcinosis-cutis", "Evaluation")]
    assert "for lupus and systemic sclerosis" in ana["citation"][0]["quote"]


def test_suspected_systemic_sclerosis_beside_established_lupus_still_proposes_the_serology(assess):
    out = assess(Facts([condition(SNOMED, "55464009", "Systemic lupus erythematosus (disorder)"),
                        condition(SNOMED, "89155008", "Systemic sclerosis (disorder)", verification="differential"),
                        *normal_minerals()], patient()))
    assert set(SEROLOGY) <= set(recommended_codes(out))


def test_lupus_panniculitis_alone_does_not_establish_sle_so_the_serology_is_proposed(assess):
    out = assess(Facts([condition(SNOMED, "239888002", "Lupus panniculitis (disorder)"), *normal_minerals()], patient()))
    ana = next(t for t in out["Recommended Tests"] if t["code"] == "8061-4")
    assert "Lupus panniculitis (disorder) on file, systemic lupus erythematosus not established" in ana["reason"]


def test_calcinosis_with_normal_minerals_and_no_cause_on_file_looks_for_lupus_and_systemic_sclerosis(assess):
    out = assess(Facts([calcinosis(), *normal_minerals()], patient()))
    assert set(SEROLOGY) <= set(recommended_codes(out))
    ana = next(t for t in out["Recommended Tests"] if t["code"] == "8061-4")
    assert ("with calcium and phosphate normal and no cause found among the data read (no connective tissue disease or other tissue "
            "damage, no iatrogenic or metastatic cause)") in ana["reason"]
    sections = [(c["source"], c["section"]) for c in ana["citation"]]
    assert ("statpearls-calcinosis-cutis", "Pathophysiology, Dystrophic Calcification") in sections


def test_calcinosis_with_a_burn_on_file_has_its_cause_and_gets_no_serology(assess):
    out = assess(Facts([calcinosis(), condition(SNOMED, "125666000", "Burn"),
                        *normal_minerals()], patient()))
    assert not set(SEROLOGY) & set(recommended_codes(out))


def test_calcinosis_after_intravenous_calcium_has_its_cause_and_gets_no_serology(assess):
    from test_knowledge_scenarios import medication

    out = assess(Facts([calcinosis(), *normal_minerals(),
                        medication("MedicationAdministration", "10 ml calcium gluconate 100 mg/ml injection", "completed")],
                       patient()))
    assert not set(SEROLOGY) & set(recommended_codes(out))


def test_calcinosis_with_high_calcium_is_no_dystrophic_picture_and_gets_no_serology(assess):
    out = assess(Facts([calcinosis(), calcium("11.9", "H"), phosphate("3.5")], patient()))
    assert not set(SEROLOGY) & set(recommended_codes(out))


def test_confirmed_rheumatoid_arthritis_is_a_known_cause_and_no_longer_brings_the_serology(assess):
    out = assess(Facts([condition(SNOMED, "69896004", "Rheumatoid arthritis"), calcinosis(), *normal_minerals()],
                       patient()))
    assert grades(out)["dystrophic"] == "high"
    assert not set(SEROLOGY) & set(recommended_codes(out))


# ---- outputs: SNOMED CT coded and named-only proposals ------------------------------------------

def _fhir_bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    base = [{"resourceType": "Patient", "id": "cc-1", "birthDate": "1968-04-02", "gender": "female"}]
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} for r in base + list(resources)]}


def _calcinosis_bundle() -> dict[str, Any]:
    subject = {"reference": "Patient/cc-1"}
    return _fhir_bundle(
        {"resourceType": "Condition", "id": "calc-1", "subject": subject,
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                            "code": "confirmed"}]},
         "code": {"coding": [{"system": ICD10CM, "code": "L94.2", "display": "Calcinosis cutis"}]}},
        {"resourceType": "Observation", "id": "ca-1", "status": "final", "subject": subject,
         "code": {"coding": [{"system": LOINC, "code": "17861-6"}]}, "effectiveDateTime": "2026-11-01T08:00:00Z",
         "valueQuantity": {"value": 9.4, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}},
    )


@pytest.fixture(scope="module")
def calcinosis_patient():
    from service.pipeline.assess import assess_bundle

    run = assess_bundle(_calcinosis_bundle(), now=NOW)
    (patient_assessment,) = run.patients
    return patient_assessment


def test_imaging_proposals_become_valid_r4_service_requests_coded_in_snomed_ct(calcinosis_patient):
    from service.fhir_outputs.result_bundle import build_result_bundle

    bundle = build_result_bundle([calcinosis_patient], [])
    requests = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
    ct = next(r for r in requests if r["code"].get("coding", [{}])[0].get("code") == "77477000")
    assert ct["code"]["coding"][0]["system"] == SNOMED
    assert (ct["status"], ct["intent"]) == ("draft", "proposal")
    assert ct["category"] == [{"text": "Imaging and tissue"}]
    for request in requests:
        ServiceRequest.model_validate(request)


def test_the_bone_scan_proposal_carries_its_name_and_no_unverified_code(calcinosis_patient):
    from service.fhir_outputs.result_bundle import build_result_bundle

    bundle = build_result_bundle([calcinosis_patient], [])
    requests = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
    (bone_scan,) = [r for r in requests if "coding" not in r["code"]]
    assert bone_scan["code"] == {"text": BONE_SCAN_NAME}
    assert "41747008" not in str(bone_scan)
    ids = [r["id"] for r in requests]
    assert len(ids) == len(set(ids))


def test_the_care_plan_says_which_tests_were_left_out_and_why():
    from service.pipeline.assess import assess_bundle
    from service.fhir_outputs.result_bundle import build_result_bundle

    subject = {"reference": "Patient/cc-1"}
    bundle = _fhir_bundle({"resourceType": "Condition", "id": "esrd", "subject": subject,
                           "code": {"coding": [{"system": ICD10CM, "code": "N18.6",
                                                "display": "End stage renal disease"}]}})
    (assessed,) = assess_bundle(bundle, now=NOW).patients
    (plan,) = [e["resource"] for e in build_result_bundle([assessed], [])["entry"]
               if e["resource"]["resourceType"] == "CarePlan"]
    assert "2 not proposed" in plan["description"]
    left_out = {a["detail"]["code"]["coding"][0]["display"]: a["detail"] for a in plan["activity"]
                if a.get("detail", {}).get("status") == "cancelled"}
    assert set(left_out) == {"Calcium [Mass/time] in 24 hour Urine", "Phosphate [Mass/time] in 24 hour Urine"}
    for detail in left_out.values():
        assert detail["statusReason"]["text"].startswith("kidney failure or dialysis on file (End stage renal disease)")
        assert detail["description"] == "Not proposed: kidney failure or dialysis on file (End stage renal disease)."


def test_the_card_offers_each_imaging_study_as_its_own_suggestion_beside_the_laboratory_panel(calcinosis_patient):
    from service.hooks.cards import CardContext, build_cards

    context = CardContext(hook="patient-view", base_url="https://cds.example.org", patient_reference="Patient/cc-1")
    (card,) = build_cards(calcinosis_patient, context)
    suggestions = card.card["suggestions"]
    assert card.card["selectionBehavior"] == "any"
    labels = [s["label"] for s in suggestions]
    assert labels[0] == f"Order {len(suggestions[0]['actions'])} missing tests"
    assert "Order CT" in labels and "Order skin biopsy" in labels
    assert any(label.startswith("Order bone scintigraphy") for label in labels)  # named only, no code
    imaging_resources = [a["resource"] for s in suggestions[1:] for a in s["actions"]]
    assert len(imaging_resources) == len(suggestions) - 1 == 6
    for resource in imaging_resources:
        ServiceRequest.model_validate(resource)
        assert (resource["status"], resource["intent"]) == ("draft", "proposal")
    coded = [r["code"]["coding"][0] for r in imaging_resources if "coding" in r["code"]]
    assert {c["system"] for c in coded} == {SNOMED}
    assert next(r for r in imaging_resources if "coding" not in r["code"])["code"] == {"text": BONE_SCAN_NAME}
    lab_codes = [a["resource"]["code"]["coding"][0]["code"] for a in suggestions[0]["actions"]]
    assert "77477000" not in lab_codes and "2731-8" in lab_codes
    assert "(None)" not in card.card["detail"] and "None" not in str(labels)


def _draft_order(order_id: str, coding: dict[str, str]) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": order_id, "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/cc-1"}, "code": {"coding": [coding]}}


def _assessed_with(*drafts: dict[str, Any]):
    from service.pipeline.assess import assess_bundle

    bundle = _calcinosis_bundle()
    bundle["entry"] += [{"resource": draft} for draft in drafts]
    (patient_assessment,) = assess_bundle(bundle, now=NOW).patients
    return patient_assessment


def test_a_drafted_ct_is_not_suggested_again_on_order_sign():
    from service.hooks.cards import CardContext, build_cards

    drafted = _assessed_with(_draft_order("draft-ct", {"system": SNOMED, "code": "77477000"}))
    context = CardContext(hook="order-sign", base_url="https://cds.example.org", patient_reference="Patient/cc-1")
    (card,) = build_cards(drafted, context)
    suggested = [a["resource"]["code"].get("coding", [{}])[0].get("code") for s in card.card["suggestions"]
                 for a in s["actions"]]
    assert "77477000" not in suggested
    assert None in suggested  # the bone scan, named only, is still offered


@pytest.mark.parametrize("coding", [
    {"system": LOINC, "code": "2731-8"},
    {"system": LOINC, "code": "14866-8"},  # PTH in moles: the same test through the PTH value set
    {"system": LOINC + "/", "code": "2731-8"},  # a LOINC system written with a trailing slash
])
def test_a_draft_order_for_pth_takes_pth_out_of_the_suggestions_through_the_rule_library_alone(coding):
    """No draft order codes reach the card: the library's "PTH Order" decides, and the card follows."""
    from service.hooks.cards import CardContext, build_cards

    drafted = _assessed_with(_draft_order("draft-pth", coding))
    assert "2731-8" not in [t.code for t in drafted.recommended]
    (pth,) = [t for t in drafted.available if t.code == "2731-8"]
    assert pth.ordered and pth.source == "ServiceRequest/draft-pth"
    context = CardContext(hook="order-sign", base_url="https://cds.example.org", patient_reference="Patient/cc-1")
    (card,) = build_cards(drafted, context)
    suggested = [a["resource"]["code"].get("coding", [{}])[0].get("code") for s in card.card["suggestions"]
                 for a in s["actions"]]
    assert "2731-8" not in suggested and "14866-8" not in suggested
    assert "62292-8" in suggested  # vitamin D, not ordered, is still proposed
    undrafted = _assessed_with()
    assert "2731-8" in [t.code for t in undrafted.recommended]


def test_the_cds_prefetch_asks_for_the_skin_pathology_report_that_shows_a_biopsy_was_done():
    from service.hooks.hook_call import load_services

    for service in load_services().values():
        assert "http://loinc.org|65754-4" in service["prefetch"]["labs"], service["id"]
        assert service["prefetch"]["procedures"].startswith("Procedure?patient=")


def test_a_skin_pathology_report_sent_as_fhir_is_read_and_the_biopsy_not_proposed_again():
    from service.pipeline.assess import assess_bundle

    bundle = _calcinosis_bundle()
    bundle["entry"].append({"resource": {
        "resourceType": "Observation", "id": "path-1", "status": "final", "subject": {"reference": "Patient/cc-1"},
        "code": {"coding": [{"system": LOINC, "code": "65754-4", "display": "Pathology biopsy report in Skin Narrative"}]},
        "effectiveDateTime": "2026-10-20T10:00:00Z",
        "valueString": "Dermal deposits staining black with von Kossa, consistent with calcinosis cutis."}})
    (assessed,) = assess_bundle(bundle, now=NOW).patients
    assert SKIN_BIOPSY not in [t.code for t in assessed.recommended]
    assert [(t.code, t.reason) for t in assessed.omitted] == [(SKIN_BIOPSY, "skin pathology report on file (2026-10-20)")]
    assert assessed.issues == ()
