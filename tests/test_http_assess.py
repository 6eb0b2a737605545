"""POST /fhir/$assess and GET /fhir/metadata as an integration engine uses them."""

from __future__ import annotations

import json

import pytest
from fhir.resources.R4B import get_fhir_model_class

from conftest import assess_fixture

ASSESS = "/fhir/$assess"


@pytest.fixture
def fixed_client(tmp_path):
    from service import create_app

    app = create_app({"EVALUATION_TIME": "2026-11-15T09:00:00Z",
                      "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")})
    return app.test_client()


def _fixture(prefix: str):
    return assess_fixture(prefix)


@pytest.mark.parametrize("media_type", ["application/fhir+json", "application/json",
                                        "application/fhir+json; charset=utf-8"])
def test_posting_a_bundle_returns_the_golden_result(fixed_client, media_type):
    path = _fixture("04")
    response = fixed_client.post(ASSESS, data=path.read_bytes(), content_type=media_type)
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    golden = json.loads(path.with_name(path.stem + ".expected.json").read_text())
    assert response.get_json() == golden


def test_multi_patient_bundle_gets_one_assessment_and_care_plan_per_patient(fixed_client):
    path = _fixture("10")
    body = json.loads(path.read_text())
    patients = [e for e in body["entry"] if e["resource"]["resourceType"] == "Patient"]
    response = fixed_client.post(ASSESS, data=path.read_bytes(), content_type="application/fhir+json")
    assert response.status_code == 200
    result = response.get_json()
    kinds = [e["resource"]["resourceType"] for e in result["entry"]]
    assert kinds.count("RiskAssessment") == len(patients) >= 2
    assert kinds.count("CarePlan") == len(patients)
    subjects = {e["resource"]["subject"]["reference"] for e in result["entry"]
                if e["resource"]["resourceType"] == "RiskAssessment"}
    assert len(subjects) == len(patients)


def test_metadata_declares_the_assess_operation(client):
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.get_json()
    get_fhir_model_class("CapabilityStatement").model_validate(statement)
    operations = [op for rest in statement["rest"] for op in rest.get("operation", [])]
    assert any(op["name"] == "assess" for op in operations)


def test_every_response_carries_a_request_id(client):
    response = client.get("/fhir/metadata", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"


def test_logs_never_contain_patient_data(fixed_client, caplog):
    path = _fixture("04")
    body = json.loads(path.read_text())
    patient = next(e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "Patient")
    caplog.set_level("DEBUG")
    fixed_client.post(ASSESS, data=path.read_bytes(), content_type="application/fhir+json")
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "POST /fhir/$assess 200" in logged
    family = patient["name"][0]["family"]
    assert family not in logged
    assert patient["birthDate"] not in logged


def test_rule_documentation_is_served(client):
    response = client.get("/docs/rules")
    assert response.status_code == 200
    assert response.mimetype == "text/markdown"
    assert "Calcinosis" in response.get_data(as_text=True)


@pytest.mark.parametrize("path, resource_type", [
    ("/fhir/OperationDefinition/assess", "OperationDefinition"),
    ("/fhir/CodeSystem/calcinosis-type", "CodeSystem"),
])
def test_the_artefacts_the_capability_statement_names_are_served(client, path, resource_type):
    response = client.get(path)
    assert response.status_code == 200
    resource = response.get_json()
    assert resource["resourceType"] == resource_type
    get_fhir_model_class(resource_type).model_validate(resource)
    if resource_type == "CodeSystem":
        assert {c["code"] for c in resource["concept"]} == {
            "dystrophic", "metastatic", "idiopathic", "iatrogenic", "calciphylaxis"}


def test_metadata_names_the_public_base_url_when_configured(tmp_path):
    from service import create_app

    app = create_app({"PUBLIC_BASE_URL": "https://cds.example.org/", "CDS_FEEDBACK_DB": str(tmp_path / "f.db")})
    statement = app.test_client().get("/fhir/metadata").get_json()
    assert statement["implementation"]["url"] == "https://cds.example.org/fhir"
