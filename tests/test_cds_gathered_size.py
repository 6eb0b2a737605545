"""Too much data for one hook call is refused in the call's terms, naming where the data came from.

A CDS client that sent no Bundle must not be told to "split the Bundle": data the service read
itself from fhirServer is a 412 naming the prefetch key and the count read; data the client sent
in prefetch is a 413 naming the key.
"""

from __future__ import annotations

import json
from pathlib import Path

import responses

from tests.support.cds_app import make_app

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "cds-hooks"
EHR = "https://ehr.example.org/fhir"
PATIENT_ID = "esrd-7301"
LIMIT = 10


def _observations(count: int) -> list[dict]:
    return [{"resource": {"resourceType": "Observation", "id": f"o{n}", "status": "final",
                          "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
                          "subject": {"reference": f"Patient/{PATIENT_ID}"}}, "search": {"mode": "match"}}
            for n in range(count)]


def _app(tmp_path):
    return make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
                     "CDS_FHIR_SERVER_ALLOWLIST": [EHR], "MAX_ASSESSED_RESOURCES": LIMIT})


def _request() -> dict:
    body = json.loads((FIXTURES / "patient-view-request.json").read_text())
    body["fhirServer"] = EHR
    return body


@responses.activate
def test_an_oversized_searchset_read_from_the_fhir_server_is_412_naming_the_key_and_count(tmp_path):
    responses.get(f"{EHR}/Observation", json={"resourceType": "Bundle", "type": "searchset",
                                              "entry": _observations(3 * LIMIT)})
    body = _request()
    del body["prefetch"]["labs"]
    response = _app(tmp_path).test_client().post("/cds-services/calcinosis-patient-view", json=body)
    assert response.status_code == 412
    (issue,) = response.get_json()["issue"]
    assert issue["code"] == "too-costly"
    assert issue["expression"] == ["prefetch.labs"]
    assert "prefetch.labs: 30 read from the FHIR server" in issue["diagnostics"]
    assert f"above the {LIMIT} one call may assess (MAX_ASSESSED_RESOURCES)" in issue["diagnostics"]
    assert "split the Bundle" not in issue["diagnostics"]


def test_an_oversized_prefetch_sent_by_the_client_is_413_naming_the_key(tmp_path):
    body = _request()
    body["prefetch"]["labs"]["entry"] = _observations(3 * LIMIT)
    response = _app(tmp_path).test_client().post("/cds-services/calcinosis-patient-view", json=body)
    assert response.status_code == 413
    (issue,) = response.get_json()["issue"]
    assert issue["expression"] == ["prefetch.labs"]
    assert "prefetch.labs: 30 sent in the request" in issue["diagnostics"]
    assert "split the Bundle" not in issue["diagnostics"]


def test_data_within_the_limit_is_assessed(tmp_path):
    body = _request()
    body["prefetch"]["labs"]["entry"] = _observations(2)
    response = _app(tmp_path).test_client().post("/cds-services/calcinosis-patient-view", json=body)
    assert response.status_code == 200
