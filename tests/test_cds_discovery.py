"""Discovery (GET /cds-services) and CORS for browser-based CDS clients."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.cds_app import make_app
from tests.support.cds_spec import empty_values

SERVICES_FILE = Path(__file__).resolve().parents[1] / "service" / "hooks" / "services.json"
# Prefetch tokens CDS Hooks 2.0 allows: context fields, and the user's FHIR id shortcuts.
ALLOWED_TOKENS = {"context.patientId", "context.userId", "context.encounterId", "userPractitionerId",
                  "userPractitionerRoleId", "userPatientId", "userRelatedPersonId"}


@pytest.fixture
def client(tmp_path):
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
                    "CDS_CORS_ORIGINS": ["https://sandbox.cds-hooks.org"]})
    return app.test_client()


def test_discovery_serves_the_service_definition_file(client):
    response = client.get("/cds-services")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == json.loads(SERVICES_FILE.read_text())


def test_there_is_one_service_per_hook_with_the_required_fields(client):
    services = client.get("/cds-services").get_json()["services"]
    assert sorted(s["hook"] for s in services) == ["order-select", "order-sign", "patient-view"]
    for service in services:
        assert service["id"] and service["description"] and service["title"]
        assert re.fullmatch(r"[A-Za-z0-9-]+", service["id"])  # usable as a URL segment
    assert empty_values(services) == []


def test_prefetch_templates_use_only_tokens_the_spec_allows(client):
    for service in client.get("/cds-services").get_json()["services"]:
        for key, template in service["prefetch"].items():
            tokens = set(re.findall(r"\{\{\s*([^}\s]+)\s*\}\}", template))
            assert tokens and tokens <= ALLOWED_TOKENS, (service["id"], key, tokens)


def test_prefetch_reads_the_patient_labs_conditions_and_medications(client):
    for service in client.get("/cds-services").get_json()["services"]:
        prefetch = service["prefetch"]
        assert prefetch["patient"] == "Patient/{{context.patientId}}"
        assert prefetch["labs"].startswith("Observation?patient={{context.patientId}}&code=")
        for code in ("17861-6", "2777-1", "2731-8", "62292-8", "2160-0", "49765-1"):
            assert f"http://loinc.org|{code}" in prefetch["labs"]
        assert prefetch["conditions"].startswith("Condition?patient=")
        assert prefetch["medications"].startswith("MedicationRequest?patient=")


def test_cors_allows_the_configured_origin_only(client):
    allowed = client.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert allowed.headers.get("Access-Control-Allow-Origin") == "https://sandbox.cds-hooks.org"
    other = client.get("/cds-services", headers={"Origin": "https://evil.example.net"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_a_cors_preflight_needs_no_token_and_allows_the_authorization_header(tmp_path):
    app = make_app({"CDS_REQUIRE_JWT": True, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
                    "CDS_CORS_ORIGINS": ["https://sandbox.cds-hooks.org"]})
    response = app.test_client().options("/cds-services/calcinosis-patient-view", headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert response.status_code == 200
    assert "authorization" in response.headers.get("Access-Control-Allow-Headers", "").lower()
