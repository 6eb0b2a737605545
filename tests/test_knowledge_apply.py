"""`POST /fhir/PlanDefinition/{id}/$apply`: the R4 shape, and the same answer as `$assess` on every fixture."""

from __future__ import annotations

import json

import pytest
from fhir.resources.R4B import get_fhir_model_class

from conftest import FIXTURES_DIR
from tests.support.cds_app import make_app

MANIFEST = json.loads((FIXTURES_DIR / "assess" / "MANIFEST.json").read_text())
PLAN_URL = "https://calcinosis-cds.org/fhir/PlanDefinition/calcinosis-cutis-work-up"
APPLY = "/fhir/PlanDefinition/calcinosis-cutis-work-up/$apply"
CASES = [(fixture["file"], patient["reference"]) for fixture in MANIFEST["fixtures"] for patient in fixture["patients"]]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = make_app({"CDS_FEEDBACK_DB": str(tmp_path_factory.mktemp("apply") / "f.sqlite3"),
                    "CDS_REQUIRE_JWT": False, "EVALUATION_TIME": MANIFEST["now"]})
    return app.test_client()


def parameters(bundle: dict, subject: str) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": "subject", "valueString": subject},
                                                        {"name": "data", "resource": bundle}]}


def _contained(care_plan: dict, kind: str) -> list[dict]:
    return [resource for resource in care_plan.get("contained", []) if resource["resourceType"] == kind]


def _without_narrative_and_links(resource: dict) -> dict:
    """What both operations must agree on: everything but the narrative and the link to the RiskAssessment
    (a Bundle urn in `$assess`, a contained `#id` in `$apply`)."""
    return {key: value for key, value in resource.items() if key not in {"text", "supportingInfo"}}


def test_there_is_a_case_for_every_fixture_patient():
    assert len(CASES) >= 20 and {file for file, _ in CASES} == {f["file"] for f in MANIFEST["fixtures"]}


@pytest.mark.parametrize(("file", "subject"), CASES)
def test_apply_agrees_with_assess(client, file, subject):
    bundle = json.loads((FIXTURES_DIR / "assess" / file).read_text())
    assessed = client.post("/fhir/$assess", json=bundle).get_json()
    response = client.post(APPLY, json=parameters(bundle, subject))
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    care_plan = response.get_json()
    get_fhir_model_class("CarePlan").model_validate(care_plan)
    for resource in care_plan["contained"]:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert "text" not in resource  # dom-1: contained resources carry no narrative

    by_id = {entry["resource"]["id"]: entry["resource"] for entry in assessed["entry"]}
    (risk,) = _contained(care_plan, "RiskAssessment")
    assert _without_narrative_and_links(risk) == _without_narrative_and_links(by_id[risk["id"]])
    subject_reference = by_id[risk["id"]]["subject"]["reference"]
    assessed_requests = [r for r in by_id.values() if r["resourceType"] == "ServiceRequest"
                         and r["subject"]["reference"] == subject_reference]
    applied_requests = _contained(care_plan, "ServiceRequest")
    assert [r["id"] for r in applied_requests] == [r["id"] for r in assessed_requests]
    for applied in applied_requests:
        assert _without_narrative_and_links(applied) == _without_narrative_and_links(by_id[applied["id"]])
        assert applied["supportingInfo"] == [{"reference": f"#{risk['id']}", "type": "RiskAssessment"}]
    # evaluation problems: the patient's OperationOutcome, and the bundle's own, as $assess has them
    for outcome in _contained(care_plan, "OperationOutcome"):
        assert outcome["issue"] == by_id[outcome["id"]]["issue"]
    assessed_outcomes = {r["id"] for r in by_id.values() if r["resourceType"] == "OperationOutcome"}
    applied_outcomes = {o["id"] for o in _contained(care_plan, "OperationOutcome")}
    assert applied_outcomes <= assessed_outcomes
    if len(MANIFEST_PATIENTS[file]) == 1:
        assert applied_outcomes == assessed_outcomes

    # the CarePlan itself: what the plan instantiates, and the request group holding the proposals
    assert (care_plan["intent"], care_plan["status"]) == ("proposal", "draft")
    assert care_plan["instantiatesCanonical"] == [f"{PLAN_URL}|1.0.0"]
    assert care_plan["subject"]["reference"] == subject_reference
    (group,) = _contained(care_plan, "RequestGroup")
    assert care_plan["activity"] == [{"reference": {"reference": f"#{group['id']}", "type": "RequestGroup"}}]
    assert group["instantiatesCanonical"] == [f"{PLAN_URL}|1.0.0"]
    grouped = [action["resource"]["reference"] for section in group.get("action", []) for action in section["action"]]
    assert sorted(grouped) == sorted(f"#{r['id']}" for r in applied_requests)
    assessed_plan = next(r for r in by_id.values() if r["resourceType"] == "CarePlan"
                         and r["subject"]["reference"] == subject_reference)
    assert care_plan["description"] == assessed_plan["description"]
    # every contained resource is referenced from the CarePlan (dom-3)
    referenced = {ref["reference"] for ref in care_plan["supportingInfo"]} | {f"#{group['id']}"} | set(grouped)
    assert referenced == {f"#{resource['id']}" for resource in care_plan["contained"]}


MANIFEST_PATIENTS = {fixture["file"]: fixture["patients"] for fixture in MANIFEST["fixtures"]}


def test_the_agreement_covers_proposals_and_evaluation_problems(client):
    """The fixtures compared above include proposed tests and skipped inputs, so neither side is vacuous."""
    counts = {}
    for prefix, subject in (("04-metastatic-esrd.json", "Patient/170cbf6b-56f0-50c0-b30f-2f94fc292362"),
                            ("14-unknown-unit.json", "Patient/p-unit-014")):
        bundle = json.loads((FIXTURES_DIR / "assess" / prefix).read_text())
        care_plan = client.post(APPLY, json=parameters(bundle, subject)).get_json()
        counts[prefix] = (len(_contained(care_plan, "ServiceRequest")), len(_contained(care_plan, "OperationOutcome")))
    assert counts["04-metastatic-esrd.json"][0] > 0
    assert counts["14-unknown-unit.json"][1] > 0


def test_apply_reads_a_subject_given_as_a_reference(client):
    bundle = json.loads((FIXTURES_DIR / "assess" / "01-dystrophic-systemic-sclerosis.json").read_text())
    body = parameters(bundle, "x")
    body["parameter"][0] = {"name": "subject", "valueReference": {"reference": "Patient/p-ssc-001"}}
    response = client.post(APPLY, json=body)
    assert response.status_code == 200
    assert response.get_json()["subject"]["reference"].endswith("p-ssc-001")


@pytest.mark.parametrize(("body", "status", "location"), [
    ({"resourceType": "Bundle", "type": "collection"}, 422, "resourceType"),
    ({"resourceType": "Parameters"}, 422, "Parameters.parameter"),
    ({"resourceType": "Parameters", "parameter": [{"name": "subject", "valueString": "Patient/p"}]}, 422,
     "Parameters.parameter"),
    ({"resourceType": "Parameters", "parameter": [{"name": "subject", "valueString": "Patient/p"},
                                                  {"name": "data", "resource": {"resourceType": "Patient"}}]},
     422, "Parameters.parameter[1].resource"),
    ({"resourceType": "Parameters", "parameter": [{"name": "subject", "valueString": "Patient/nobody"},
                                                  {"name": "data", "resource": {"resourceType": "Bundle",
                                                                                "type": "collection", "entry": []}}]},
     422, "Parameters.parameter"),
    ({"resourceType": "Parameters", "parameter": [{"name": "subject", "valueInteger": 3}]}, 422,
     "Parameters.parameter[0].valueString"),
])
def test_bad_apply_parameters_are_4xx_operation_outcomes_at_their_location(client, body, status, location):
    response = client.post(APPLY, json=body)
    assert response.status_code == status
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [location]


def test_apply_on_an_unknown_plan_definition_is_404(client):
    response = client.post("/fhir/PlanDefinition/other/$apply", json={"resourceType": "Parameters"})
    assert response.status_code == 404
    assert response.get_json()["issue"][0]["code"] == "not-found"
