"""OperationOutcome from InputIssues: for skipped inputs and for every 4xx answer."""

from __future__ import annotations

from service.assessment_model import InputIssue
from service.fhir_outputs import build_result_bundle, operation_outcome
from test_outputs_scenarios import BUNDLE_ISSUES, dystrophic_with_condition, metastatic_high, no_labs, validate_r4

UNIT_ISSUE = InputIssue("warning", "value", "Unit 'mmol' is not a concentration; calcium result skipped.",
                        "Bundle.entry[7].resource.valueQuantity.unit")


def test_a_single_error_gives_one_issue_with_its_fhirpath_location():
    outcome = operation_outcome(InputIssue("error", "invalid", "Body is not JSON.", "Bundle"))
    validate_r4(outcome)
    assert outcome["issue"] == [{"severity": "error", "code": "invalid", "diagnostics": "Body is not JSON.",
                                 "location": ["Bundle"], "expression": ["Bundle"]}]


def test_several_issues_keep_their_order_and_an_issue_without_location_has_none():
    issues = [UNIT_ISSUE, InputIssue("information", "informational", "Preliminary result used.")]
    outcome = operation_outcome(issues, resource_id="oo-1")
    validate_r4(outcome)
    assert outcome["id"] == "oo-1"
    assert [i["severity"] for i in outcome["issue"]] == ["warning", "information"]
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[7].resource.valueQuantity.unit"]
    assert "expression" not in outcome["issue"][1] and "location" not in outcome["issue"][1]


def test_an_issue_code_outside_r4_becomes_processing_and_keeps_the_original_code():
    outcome = operation_outcome(InputIssue("error", "unit-unknown", "Unit 'foo' unknown.",
                                           "Bundle.entry[2].resource.valueQuantity"))
    validate_r4(outcome)
    assert outcome["issue"][0]["code"] == "processing"
    assert outcome["issue"][0]["details"] == {"text": "issue code given: unit-unknown"}


def test_no_issue_at_all_still_gives_a_valid_outcome_saying_so():
    outcome = operation_outcome([])
    validate_r4(outcome)
    assert outcome["issue"] == [{"severity": "information", "code": "informational", "diagnostics": "No issues."}]


def test_a_patient_with_skipped_input_gets_an_outcome_after_its_service_requests():
    bundle = build_result_bundle([metastatic_high()], [])
    kinds = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    assert kinds == ["RiskAssessment", "CarePlan", "ServiceRequest", "ServiceRequest", "ServiceRequest",
                     "OperationOutcome"]
    outcome = bundle["entry"][-1]["resource"]
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[7].resource.valueQuantity.unit"]
    assert outcome["issue"][0]["diagnostics"] == UNIT_ISSUE.diagnostics


def test_patients_without_skipped_input_get_no_outcome():
    bundle = build_result_bundle([no_labs(), dystrophic_with_condition()], [])
    assert all(entry["resource"]["resourceType"] != "OperationOutcome" for entry in bundle["entry"])


def test_issues_not_tied_to_a_patient_close_the_bundle_in_their_own_outcome():
    bundle = build_result_bundle([no_labs()], BUNDLE_ISSUES)
    last = bundle["entry"][-1]["resource"]
    validate_r4(last)
    assert last["resourceType"] == "OperationOutcome"
    assert last["issue"][0]["location"] == ["Bundle.entry[12].resource"]
    assert last["issue"][0]["code"] == "not-supported"


def test_bundle_issues_alone_without_patients_still_give_a_valid_bundle():
    bundle = build_result_bundle([], BUNDLE_ISSUES)
    validate_r4(bundle)
    assert [entry["resource"]["resourceType"] for entry in bundle["entry"]] == ["OperationOutcome"]
