"""A CPU budget per `$assess` request, refused up front from the request's counted size (413), never cut off."""

from __future__ import annotations

import pytest

from conftest import assess_fixture
from service.pipeline import assess as assess_module
from service.web.request_budget import count_size
from tests.support.cds_app import make_app

ASSESS = "/fhir/$assess"


def _observations(count: int) -> dict:
    entries = [{"resource": {"resourceType": "Patient", "id": "p1"}}]
    entries += [{"resource": {"resourceType": "Observation", "id": f"o{n}", "status": "final",
                              "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
                              "subject": {"reference": "Patient/p1"}}} for n in range(count)]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


@pytest.fixture
def no_core(monkeypatch):
    """Any assessment would fail the test: a refusal must come before the core is called."""
    def refuse(*args, **kwargs):
        raise AssertionError("the core was called")
    monkeypatch.setattr(assess_module.Assessor, "assess", refuse)


def test_a_bundle_within_every_count_limit_but_over_the_cpu_budget_is_refused_before_any_work(tmp_path, no_core):
    client = make_app({"CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3")}).test_client()
    response = client.post(ASSESS, json=_observations(9000))  # under MAX_ASSESSED_RESOURCES (20000)
    assert response.status_code == 413
    (issue,) = response.get_json()["issue"]
    assert issue["code"] == "too-costly" and issue["expression"] == ["Bundle.entry"]
    assert "9001 resources the rules read, 1 Patient resources" in issue["diagnostics"]
    assert "above the 4 s allowed per request (ASSESS_CPU_BUDGET_SECONDS)" in issue["diagnostics"]


def test_the_budget_is_configurable(tmp_path, no_core):
    client = make_app({"CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"), "ASSESS_CPU_BUDGET_SECONDS": 0.001}).test_client()
    response = client.post(ASSESS, data=assess_fixture("04").read_bytes(),
                           headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 413
    assert "ASSESS_CPU_BUDGET_SECONDS" in response.get_json()["issue"][0]["diagnostics"]


def test_a_request_within_the_budget_is_assessed(tmp_path):
    client = make_app({"CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3")}).test_client()
    response = client.post(ASSESS, data=assess_fixture("04").read_bytes(),
                           headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200


def test_the_hard_count_limits_keep_their_own_refusal(tmp_path):
    client = make_app({"CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"), "MAX_ASSESSED_RESOURCES": 5,
                       "ASSESS_CPU_BUDGET_SECONDS": 0.001}).test_client()
    response = client.post(ASSESS, json=_observations(10))
    assert response.status_code == 413
    assert "one request assesses at most 5" in response.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("bundle", [None, [], {"entry": "x"}, {"entry": [1, {"resource": []},
                                    {"resource": {"resourceType": ["Patient"]}}, {"resource": {"resourceType": {}}}]}])
def test_counting_never_fails_on_a_malformed_body(bundle):
    size = count_size(bundle, 10)
    assert size.resources_read == 0 and size.patients == 0


def _vital_signs(count: int) -> dict:
    bundle = _observations(0)
    bundle["entry"] += [{"resource": {"resourceType": "Observation", "id": f"v{n}", "status": "final",
                                      "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                                      "subject": {"reference": "Patient/p1"}}} for n in range(count)]
    return bundle


@pytest.mark.parametrize("streamed", [False, True])
def test_max_assessed_resources_counts_by_type_before_the_selection_by_code(tmp_path, monkeypatch, streamed):
    """Heart rates are never read by the rules, yet count: the limit is checked from the types alone, up
    front, so that a refusal costs no validation (README, MAX_ASSESSED_RESOURCES)."""
    import orjson
    import service.web.http_io as http_io

    if streamed:
        monkeypatch.setattr(http_io.read_bundle_body, "__kwdefaults__", {"stream_from": 0})
    client = make_app({"CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"), "MAX_ASSESSED_RESOURCES": 5}).test_client()
    headers = {"Content-Type": "application/fhir+json"}
    refused = client.post(ASSESS, data=orjson.dumps(_vital_signs(5)), headers=headers)
    assert refused.status_code == 413
    (issue,) = refused.get_json()["issue"]
    assert issue["diagnostics"].startswith("the Bundle holds 6 resources the rules read; one request assesses at most 5")
    assert client.post(ASSESS, data=orjson.dumps(_vital_signs(4)), headers=headers).status_code == 200
