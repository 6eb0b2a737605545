"""Prefetch, null versus missing, and the fhirServer fallback (CDS Hooks 2.0 Prefetch, FHIR Resource Access)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import responses
from responses import matchers

from service.hooks import hook_call
from service.hooks.fhir_fetch import FetchError, FhirFetcher
from tests.support.cds_app import FakeCore, make_app, metastatic_assessment

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "cds-hooks"
EHR = "https://ehr.example.org/fhir"
PATIENT_ID = "esrd-7301"
TOKEN = "some-opaque-fhir-access-token"


@pytest.fixture
def core(monkeypatch) -> FakeCore:
    fake = FakeCore(metastatic_assessment(PATIENT_ID))
    monkeypatch.setattr(hook_call, "core_assess", fake)
    return fake


@pytest.fixture
def client(tmp_path, core):
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
                    "CDS_FHIR_SERVER_ALLOWLIST": [EHR], "CDS_FHIR_MAX_PAGES": 2})
    return app.test_client()


def _request() -> dict:
    return json.loads((FIXTURES / "patient-view-request.json").read_text())


def _post(client, body):
    return client.post("/cds-services/calcinosis-patient-view", json=body)


def _types(bundle: dict) -> list[str]:
    return sorted(e["resource"]["resourceType"] for e in bundle["entry"])


def _searchset(resources, next_url=None) -> dict:
    bundle = {"resourceType": "Bundle", "type": "searchset",
              "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def _observation(oid: str) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "valueQuantity": {"value": 9.1, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}


@responses.activate
def test_complete_prefetch_is_used_without_contacting_the_fhir_server(client, core):
    response = _post(client, _request())
    assert response.status_code == 200
    assert len(responses.calls) == 0
    assert _types(core.bundles[0]) == ["Condition", "Observation", "Observation", "Observation", "Patient"]
    assert core.bundles[0]["type"] == "collection"


@responses.activate
def test_a_null_prefetch_key_means_no_data_and_is_not_fetched(client, core):
    body = _request()
    body["prefetch"]["labs"] = None
    assert _post(client, body).status_code == 200
    assert len(responses.calls) == 0
    assert _types(core.bundles[0]) == ["Condition", "Patient"]


@responses.activate
def test_a_missing_prefetch_key_is_fetched_with_the_bearer_token(client, core):
    body = _request()
    del body["prefetch"]["labs"]
    responses.get(f"{EHR}/Observation", json=_searchset([_observation("fetched-1")]),
                  match=[matchers.header_matcher({"Authorization": f"Bearer {TOKEN}"})])
    assert _post(client, body).status_code == 200
    assert len(responses.calls) == 1
    assert "code=http" in responses.calls[0].request.url and f"patient={PATIENT_ID}" in responses.calls[0].request.url
    ids = [e["resource"]["id"] for e in core.bundles[0]["entry"]]
    assert "fetched-1" in ids and "ca-7301" not in ids


@responses.activate
def test_an_operation_outcome_in_prefetch_counts_as_missing(client, core):
    body = _request()
    body["prefetch"]["conditions"] = {"resourceType": "OperationOutcome",
                                      "issue": [{"severity": "error", "code": "timeout"}]}
    responses.get(f"{EHR}/Condition", json=_searchset([]))
    assert _post(client, body).status_code == 200
    assert [c.request.url.split("?")[0] for c in responses.calls] == [f"{EHR}/Condition"]


@responses.activate
def test_searchset_pages_are_followed_up_to_the_cap_and_the_cap_is_reported(client, core):
    body = _request()
    del body["prefetch"]["labs"]
    responses.get(f"{EHR}/Observation", json=_searchset([_observation("o1")], f"{EHR}?_getpages=x&page=2"))
    responses.get(f"{EHR}", json=_searchset([_observation("o2")], f"{EHR}?_getpages=x&page=3"),
                  match=[matchers.query_param_matcher({"_getpages": "x", "page": "2"})])
    response = _post(client, body)
    assert response.status_code == 200
    assert len(responses.calls) == 2  # the third page is beyond CDS_FHIR_MAX_PAGES=2
    ids = [e["resource"]["id"] for e in core.bundles[0]["entry"]]
    assert "o1" in ids and "o2" in ids
    detail = response.get_json()["cards"][-1]["detail"]
    assert "only the first 2 pages of Observation were read" in detail


def _fallback_412(client, body) -> dict:
    response = _post(client, body)
    assert response.status_code == 412
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome


@responses.activate
def test_a_fhir_server_timeout_gives_412(client):
    body = _request()
    del body["prefetch"]["labs"]
    responses.get(f"{EHR}/Observation", body=requests.exceptions.ReadTimeout("slow"))
    outcome = _fallback_412(client, body)
    assert outcome["issue"][0]["expression"] == ["prefetch.labs"]
    assert "did not answer" in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize("status, words", [(401, "refused access"), (500, "HTTP 500")])
@responses.activate
def test_fhir_server_errors_give_412_naming_the_key(client, status, words):
    body = _request()
    del body["prefetch"]["patient"]
    responses.get(f"{EHR}/Patient/{PATIENT_ID}", status=status, json={"resourceType": "OperationOutcome"})
    outcome = _fallback_412(client, body)
    assert outcome["issue"][0]["expression"] == ["prefetch.patient"]
    assert words in outcome["issue"][0]["diagnostics"]
    assert TOKEN not in json.dumps(outcome)


@responses.activate
def test_a_fhir_server_not_on_the_allowlist_is_never_contacted(client):
    body = _request()
    body["fhirServer"] = "https://elsewhere.example.net/fhir"
    del body["prefetch"]["labs"]
    outcome = _fallback_412(client, body)
    assert len(responses.calls) == 0
    assert "allowlist" in outcome["issue"][0]["diagnostics"]


def test_missing_prefetch_without_fhir_server_gives_412(client):
    body = _request()
    del body["fhirServer"], body["fhirAuthorization"], body["prefetch"]["conditions"]
    outcome = _fallback_412(client, body)
    assert outcome["issue"][0]["expression"] == ["prefetch.conditions"]


def test_no_prefetch_and_no_fhir_server_gives_412_for_every_key(client):
    body = _request()
    del body["fhirServer"], body["fhirAuthorization"], body["prefetch"]
    outcome = _fallback_412(client, body)
    assert {i["expression"][0] for i in outcome["issue"]} == {
        "prefetch.patient", "prefetch.labs", "prefetch.conditions", "prefetch.medications", "prefetch.procedures"}


@responses.activate
def test_a_next_link_to_another_server_is_not_followed_with_the_token():
    fetcher = FhirFetcher(allowlist=[EHR], connect_timeout=1, read_timeout=1, max_pages=5)
    responses.get(f"{EHR}/Observation", json=_searchset([_observation("o1")], "https://evil.example.net/page2"))
    with pytest.raises(FetchError, match="another server"):
        fetcher.fetch(EHR, "Observation?patient=1", TOKEN)
    assert len(responses.calls) == 1


def test_the_allowlist_matches_whole_path_segments():
    fetcher = FhirFetcher(allowlist=[EHR], connect_timeout=1, read_timeout=1, max_pages=5)
    fetcher.check_server(f"{EHR}/")
    fetcher.check_server("HTTPS://EHR.example.org/fhir")
    with pytest.raises(FetchError):
        fetcher.check_server("https://ehr.example.org/fhir-evil")
    with pytest.raises(FetchError):
        fetcher.check_server("https://ehr.example.org.evil.net/fhir")


def test_a_prefetched_patient_with_another_id_is_refused(client):
    body = _request()
    body["prefetch"]["patient"] = dict(body["prefetch"]["patient"], id="someone-else")
    response = _post(client, body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["prefetch.patient.id"]


def test_draft_orders_reach_the_core_in_the_same_bundle(client, core):
    body = json.loads((FIXTURES / "order-sign-request.json").read_text())
    response = client.post("/cds-services/calcinosis-order-sign", json=body)
    assert response.status_code == 200
    drafts = [e["resource"] for e in core.bundles[0]["entry"] if e["resource"].get("status") == "draft"]
    assert {r["id"] for r in drafts} == {"draft-k-phos", "draft-pth"}


def test_nothing_to_say_is_an_empty_cards_array(tmp_path, monkeypatch):
    from tests.support.cds_app import quiet_assessment

    monkeypatch.setattr(hook_call, "core_assess", FakeCore(quiet_assessment(PATIENT_ID)))
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")})
    response = _post(app.test_client(), _request())
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_an_assessment_of_another_patient_is_never_shown(tmp_path, monkeypatch):
    monkeypatch.setattr(hook_call, "core_assess", FakeCore(metastatic_assessment("someone-else")))
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")})
    response = _post(app.test_client(), _request())
    assert response.get_json() == {"cards": []}
