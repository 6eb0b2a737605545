"""CarePlan proposal and its draft ServiceRequests, with references kept within R4."""

from __future__ import annotations

import dataclasses

import pytest

from service.fhir_outputs import OutputValidationError, build_result_bundle
from service.fhir_outputs.validation import validate_resource
from test_outputs_scenarios import dystrophic_with_condition, metastatic_high, no_labs, resources_of, validate_r4


def outputs_of(patient):
    bundle = build_result_bundle([patient], [])
    for entry in bundle["entry"]:
        validate_r4(entry["resource"])
    (risk,) = resources_of(bundle, "RiskAssessment")
    (plan,) = resources_of(bundle, "CarePlan")
    return bundle, risk, plan, resources_of(bundle, "ServiceRequest")


def test_one_draft_proposal_per_recommended_test_in_the_given_order_with_loinc_codes():
    _, _, _, requests = outputs_of(metastatic_high())
    assert [r["code"]["coding"][0]["code"] for r in requests] == ["2731-8", "62292-8", "1963-8"]
    assert {r["code"]["coding"][0]["system"] for r in requests} == {"http://loinc.org"}
    assert {(r["status"], r["intent"]) for r in requests} == {("draft", "proposal")}
    assert all(r["subject"] == {"reference": "Patient/esrd-1"} for r in requests)


def test_imaging_is_coded_in_snomed_ct():
    _, _, _, requests = outputs_of(dystrophic_with_condition())
    imaging = [r for r in requests if r["category"][0]["text"] == "Imaging and tissue"]
    assert imaging[0]["code"]["coding"][0] == {"system": "http://snomed.info/sct", "code": "168537006",
                                               "display": "Plain X-ray"}


def test_without_a_condition_the_reason_is_the_out_of_range_observations_only():
    _, _, _, requests = outputs_of(metastatic_high())
    for request in requests:
        # creatinine was flagged N: it did not prompt the work-up
        assert [ref["reference"] for ref in request["reasonReference"]] == ["Observation/ca-1", "Observation/phos-1"]
    assert requests[0]["reasonCode"] == [
        {"text": "Hyperparathyroidism drives metastatic calcinosis; no PTH in the last 90 days."}]


def test_with_a_calcinosis_condition_the_reason_and_addresses_are_that_condition():
    _, _, plan, requests = outputs_of(dystrophic_with_condition())
    assert all(r["reasonReference"] == [{"reference": "Condition/calcinosis-7"}] for r in requests)
    assert plan["addresses"] == [{"reference": "Condition/calcinosis-7"}]


def test_no_labs_and_no_condition_leaves_reason_reference_out_but_keeps_the_reason_text():
    _, _, plan, requests = outputs_of(no_labs())
    assert len(requests) == 4
    assert all("reasonReference" not in r for r in requests)
    assert all(r["reasonCode"][0]["text"].startswith("Baseline work-up for calcinosis cutis") for r in requests)
    assert "addresses" not in plan


def test_risk_assessment_is_linked_through_supporting_info_on_requests_and_plan():
    bundle, risk, plan, requests = outputs_of(metastatic_high())
    risk_link = {"reference": f"urn:uuid:{risk['id']}", "type": "RiskAssessment"}
    assert plan["supportingInfo"][0] == risk_link
    assert all(r["supportingInfo"] == [risk_link] for r in requests)
    full_urls = {entry["fullUrl"] for entry in bundle["entry"]}
    assert risk_link["reference"] in full_urls


def test_care_plan_activities_reference_each_service_request_in_order():
    bundle, _, plan, requests = outputs_of(metastatic_high())
    proposed = [a for a in plan["activity"] if a.get("reference", {}).get("type") == "ServiceRequest"]
    activity_refs = [a["reference"]["reference"] for a in proposed]
    assert activity_refs == [f"urn:uuid:{r['id']}" for r in requests]
    assert [a["reference"]["display"] for a in proposed] == ["PTH intact", "25-hydroxyvitamin D", "Bicarbonate"]
    assert [a["progress"][0]["text"] for a in proposed] == [
        "Hyperparathyroidism drives metastatic calcinosis; no PTH in the last 90 days.",
        "Hypervitaminosis D drives metastatic calcinosis.", "Milk-alkali syndrome: check bicarbonate."]
    full_urls = [entry["fullUrl"] for entry in bundle["entry"]]
    assert all(ref in full_urls for ref in activity_refs)


def test_care_plan_header_and_readable_description():
    _, _, plan, _ = outputs_of(metastatic_high())
    assert (plan["status"], plan["intent"], plan["title"]) == ("active", "proposal", "Calcinosis cutis work-up")
    assert plan["subject"] == {"reference": "Patient/esrd-1"}
    description = plan["description"]
    assert description == ("Most likely: metastatic calcinosis cutis (high). Proposed: 3 laboratory tests; "
                           "2 tests already available (see activities); 1 order alert (see notes).")
    assert ".." not in description
    shown = " ".join(" ".join(plan["text"]["div"].replace("<", " <").replace(">", "> ").split()).split())
    assert "PTH intact </td> <td> proposed </td> <td> Hyperparathyroidism drives metastatic calcinosis" in shown
    assert "Bicarbonate </td> <td> proposed" in shown
    (calcium,) = [a for a in plan["activity"] if a.get("detail", {}).get("code", {}).get("text") == "Calcium (serum)"]
    assert calcium["detail"]["status"] == "completed"
    assert calcium["detail"]["description"] == "Result on file: 11.2 mg/dL on 2026-10-30."
    assert calcium["outcomeReference"] == [{"reference": "Observation/ca-1"}]


def test_equal_top_grades_are_all_named_in_the_description():
    _, _, plan, _ = outputs_of(no_labs())
    assert plan["description"].startswith("Most likely, graded equally: dystrophic calcinosis cutis, "
                                          "metastatic calcinosis cutis")
    assert "(low)." in plan["description"]


def test_order_alerts_become_care_plan_notes():
    _, _, plan, _ = outputs_of(metastatic_high())
    assert plan["note"] == [{"text": "Calcium gluconate 10% IV (MedicationRequest/cagluc-1): Check phosphate "
                                     "first; dilute and watch the site for extravasation."}]


def test_nothing_to_propose_gives_a_plan_without_service_requests():
    patient = dataclasses.replace(dystrophic_with_condition(), recommended=())
    _, _, plan, requests = outputs_of(patient)
    assert requests == []
    assert [a["detail"]["status"] for a in plan["activity"]] == ["completed"]  # the calcium on file
    assert "No further test is proposed; 1 test already available" in plan["description"]


def test_nothing_at_all_in_the_work_up_gives_a_plan_without_activities():
    patient = dataclasses.replace(dystrophic_with_condition(), recommended=(), available=())
    _, _, plan, requests = outputs_of(patient)
    assert requests == [] and "activity" not in plan
    assert plan["description"] == "Most likely: dystrophic calcinosis cutis (high). No further test is proposed."


def test_a_reason_reference_to_a_risk_assessment_is_rejected_as_outside_r4():
    request = {"resourceType": "ServiceRequest", "id": "x", "status": "draft", "intent": "proposal",
               "subject": {"reference": "Patient/1"},
               "reasonReference": [{"reference": "urn:uuid:0f0e0d0c-0000-4000-8000-000000000000"}]}
    with pytest.raises(OutputValidationError, match=r"ServiceRequest/x\.reasonReference\[0\].*RiskAssessment"):
        validate_resource(request, {"urn:uuid:0f0e0d0c-0000-4000-8000-000000000000": "RiskAssessment"})


def test_a_reason_reference_whose_target_cannot_be_told_is_rejected():
    request = {"resourceType": "ServiceRequest", "id": "x", "status": "draft", "intent": "proposal",
               "subject": {"reference": "Patient/1"},
               "reasonReference": [{"reference": "urn:uuid:0f0e0d0c-0000-4000-8000-000000000000"}]}
    with pytest.raises(OutputValidationError, match="does not say what it points at"):
        validate_resource(request)


def test_an_urn_uuid_condition_from_the_caller_is_typed_so_its_target_is_known():
    patient = dataclasses.replace(dystrophic_with_condition(),
                                  calcinosis_condition="urn:uuid:6c1f2a9e-0000-4000-8000-0000000000aa")
    _, _, plan, requests = outputs_of(patient)
    expected = {"reference": "urn:uuid:6c1f2a9e-0000-4000-8000-0000000000aa", "type": "Condition"}
    assert plan["addresses"] == [expected]
    assert requests[0]["reasonReference"] == [expected]


def test_results_the_care_plan_names_as_available_are_cited_in_supporting_info():
    from dataclasses import replace

    from service.assessment_model import AvailableTest
    from service.fhir_outputs.care_plan import build_care_plan

    patient = replace(metastatic_high(), available=(
        AvailableTest("1963-8", "http://loinc.org", "Bicarbonate [Moles/volume] in Serum or Plasma",
                      "34 mmol/L on 2026-11-09", "Observation/bicarb-1"),
        AvailableTest("58410-2", "http://loinc.org", "CBC panel", "already ordered (ServiceRequest active, 2026-11-10)",
                      "ServiceRequest/cbc-order")))
    plan = build_care_plan(patient, "urn:uuid:00000000-0000-4000-8000-000000000001", [])
    cited = [item.get("reference") for item in plan["supportingInfo"]]
    assert "Observation/bicarb-1" in cited and "ServiceRequest/cbc-order" in cited
    (bicarbonate,) = [a for a in plan["activity"] if "detail" in a]
    assert bicarbonate["detail"]["description"] == "Result on file: 34 mmol/L on 2026-11-09."
    assert bicarbonate["outcomeReference"] == [{"reference": "Observation/bicarb-1"}]
    (order,) = [a for a in plan["activity"] if "reference" in a]
    assert order["reference"] == {"reference": "ServiceRequest/cbc-order", "display": "CBC panel"}
    assert order["progress"] == [{"text": "Already ordered (ServiceRequest active, 2026-11-10): not proposed again."}]
    assert "1 test already available; 1 test already ordered" in plan["description"]
