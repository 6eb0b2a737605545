"""A service call the service cannot trust to mean what it says is refused with 400 and an OperationOutcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.hooks import hook_call
from tests.support.cds_app import FakeCore, make_app, metastatic_assessment

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "cds-hooks"


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setattr(hook_call, "core_assess", FakeCore(metastatic_assessment("esrd-7301")))
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")})
    return app.test_client()


def _fixture(hook: str) -> dict:
    return json.loads((FIXTURES / f"{hook}-request.json").read_text())


def _expect_400(response) -> list[str]:
    assert response.status_code == 400, response.get_data(as_text=True)
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    return [issue["expression"][0] for issue in outcome["issue"]]


def _drop(body: dict, dotted: str) -> dict:
    *parents, last = dotted.split(".")
    target = body
    for name in parents:
        target = target[name]
    del target[last]
    return body


@pytest.mark.parametrize("hook, removed", [
    ("patient-view", "hookInstance"),
    ("patient-view", "hook"),
    ("patient-view", "context"),
    ("patient-view", "context.patientId"),
    ("patient-view", "context.userId"),
    ("order-select", "context.selections"),
    ("order-select", "context.draftOrders"),
    ("order-sign", "context.draftOrders"),
])
def test_a_call_missing_a_required_field_is_refused_naming_it(client, hook, removed):
    body = _drop(_fixture(hook), removed)
    locations = _expect_400(client.post(f"/cds-services/calcinosis-{hook}", json=body))
    assert removed in locations


def test_a_hook_that_does_not_match_the_service_is_refused(client):
    locations = _expect_400(client.post("/cds-services/calcinosis-order-sign", json=_fixture("patient-view")))
    assert "hook" in locations


def test_a_hook_instance_that_is_not_a_uuid_is_refused(client):
    body = _fixture("patient-view")
    body["hookInstance"] = "call-17"
    assert _expect_400(client.post("/cds-services/calcinosis-patient-view", json=body)) == ["hookInstance"]


def test_fhir_authorization_without_fhir_server_is_refused(client):
    body = _fixture("patient-view")
    del body["fhirServer"]
    assert "fhirAuthorization" in _expect_400(client.post("/cds-services/calcinosis-patient-view", json=body))


def test_fhir_authorization_missing_its_token_is_refused(client):
    body = _fixture("patient-view")
    del body["fhirAuthorization"]["access_token"]
    locations = _expect_400(client.post("/cds-services/calcinosis-patient-view", json=body))
    assert locations == ["fhirAuthorization.access_token"]


def test_a_prefetch_value_that_is_not_a_resource_is_refused(client):
    body = _fixture("patient-view")
    body["prefetch"]["labs"] = ["not", "a", "bundle"]
    assert _expect_400(client.post("/cds-services/calcinosis-patient-view", json=body)) == ["prefetch.labs"]


def test_a_selection_that_is_not_a_reference_is_refused(client):
    body = _fixture("order-select")
    body["context"]["selections"] = ["draft-ca-gluconate"]
    assert _expect_400(client.post("/cds-services/calcinosis-order-select", json=body)) == ["context.selections[0]"]


def test_a_body_that_is_not_json_is_refused(client):
    response = client.post("/cds-services/calcinosis-patient-view", data="{not json",
                           content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_a_json_array_body_is_refused(client):
    _expect_400(client.post("/cds-services/calcinosis-patient-view", json=[1, 2]))


def test_an_unknown_service_id_is_404_with_an_operation_outcome(client):
    response = client.post("/cds-services/no-such-service", json=_fixture("patient-view"))
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("patient_id", ["../Practitioner/1", "1?_include=*", "a b"])
def test_a_patient_id_that_is_not_a_fhir_id_is_refused_before_any_query(client, patient_id):
    body = _fixture("patient-view")
    body["context"]["patientId"] = patient_id
    assert _expect_400(client.post("/cds-services/calcinosis-patient-view", json=body)) == ["context.patientId"]
