"""The fhirServer fallback against a real FHIR server started on 127.0.0.1 (sekmet-fhir)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from service.hooks import hook_call
from tests.support.cds_app import FakeCore, make_app, metastatic_assessment
from tests.support.real_fhir_server import put_resources, run_sekmet

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "cds-hooks"
PATIENT_ID = "esrd-7301"
OLDER_CALCIUM_RESULTS = 22  # with the server's 20 per page, the labs search spans two pages


@pytest.fixture(scope="module")
def fhir_base(tmp_path_factory):
    yield from run_sekmet(tmp_path_factory.mktemp("sekmet"))


@pytest.fixture(scope="module")
def loaded_server(fhir_base):
    prefetch = json.loads((FIXTURES / "patient-view-request.json").read_text())["prefetch"]
    resources = [prefetch["patient"]]
    resources += [e["resource"] for e in prefetch["labs"]["entry"] + prefetch["conditions"]["entry"]]
    template = prefetch["labs"]["entry"][0]["resource"]
    for day in range(OLDER_CALCIUM_RESULTS):
        older = json.loads(json.dumps(template))
        older.update(id=f"ca-old-{day}", effectiveDateTime=f"2025-01-{day + 1:02d}T08:00:00Z",
                     issued=f"2025-01-{day + 1:02d}T08:00:00Z")
        older["valueQuantity"]["value"] = 9.0
        resources.append(older)
    put_resources(fhir_base, resources)
    return fhir_base


def _call_without_prefetch(fhir_base: str) -> dict:
    return {
        "hook": "patient-view", "hookInstance": str(uuid.uuid4()), "fhirServer": fhir_base,
        "fhirAuthorization": {"access_token": "opaque-token", "token_type": "Bearer", "expires_in": 300,
                              "scope": "user/*.read", "subject": "cds-service-calcinosis"},
        "context": {"userId": "Practitioner/example", "patientId": PATIENT_ID},
    }


def test_without_prefetch_every_page_of_the_patients_data_is_read_from_the_server(loaded_server, tmp_path,
                                                                                   monkeypatch):
    core = FakeCore(metastatic_assessment(PATIENT_ID))
    monkeypatch.setattr(hook_call, "core_assess", core)
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
                    "CDS_FHIR_SERVER_ALLOWLIST": [loaded_server]})
    response = app.test_client().post("/cds-services/calcinosis-patient-view", json=_call_without_prefetch(loaded_server))
    assert response.status_code == 200, response.get_data(as_text=True)
    (bundle,) = core.bundles
    by_type: dict[str, list[str]] = {}
    for entry in bundle["entry"]:
        by_type.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"]["id"])
    assert by_type["Patient"] == [PATIENT_ID]
    assert len(by_type["Observation"]) == 3 + OLDER_CALCIUM_RESULTS
    assert {"ca-7301", "p-7301", "ca-old-21"} <= set(by_type["Observation"])
    assert by_type["Condition"] == ["esrd-dx-7301"]
    assert all(e["fullUrl"].startswith(loaded_server) for e in bundle["entry"])
    assert response.get_json()["cards"][0]["summary"].startswith("Metastatic calcinosis likely")


def test_a_real_server_not_on_the_allowlist_is_not_queried(loaded_server, tmp_path, monkeypatch):
    monkeypatch.setattr(hook_call, "core_assess", FakeCore(metastatic_assessment(PATIENT_ID)))
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
                    "CDS_FHIR_SERVER_ALLOWLIST": ["https://ehr.example.org/fhir"]})
    response = app.test_client().post("/cds-services/calcinosis-patient-view", json=_call_without_prefetch(loaded_server))
    assert response.status_code == 412


def test_the_card_from_server_data_matches_the_prefetch_answer(loaded_server, tmp_path, monkeypatch):
    from tests.conftest import FIXTURE_NOW

    original = hook_call.core_assess
    monkeypatch.setattr(hook_call, "core_assess",
                        lambda bundle, *, config, **_: original(bundle, config=config, now=FIXTURE_NOW))
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
                    "CDS_FHIR_SERVER_ALLOWLIST": [loaded_server]})
    response = app.test_client().post("/cds-services/calcinosis-patient-view", json=_call_without_prefetch(loaded_server))
    assert response.status_code == 200, response.get_data(as_text=True)
    (card,) = response.get_json()["cards"]
    assert card["indicator"] == "warning"  # no calcinosis cutis on file on that server
    assert card["summary"] == "Metastatic calcinosis likely: Ca x P 81.8 mg2/dL2"
    assert "| Ca | 11.2 mg/dL (H) | 2026-11-01 |" in card["detail"]
