"""A service call the service cannot trust to mean what it says is refused with 400 and an OperationOutcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def _draft_entries(body: dict) -> list[dict]:
    return body["context"]["draftOrders"]["entry"]


def test_a_draft_order_for_another_patient_is_refused_naming_its_subject(client):
    body = _fixture("order-sign")
    _draft_entries(body)[1]["resource"]["subject"] = {"reference": "Patient/someone-else"}
    response = client.post("/cds-services/calcinosis-order-sign", json=body)
    assert _expect_400(response) == ["context.draftOrders.entry[1].resource.subject"]
    assert "someone-else" not in response.get_data(as_text=True)


def test_a_draft_order_whose_subject_names_the_patient_by_full_url_is_accepted(client):
    body = _fixture("order-sign")
    _draft_entries(body)[0]["resource"]["subject"] = {"reference": "https://ehr.example.org/fhir/Patient/esrd-7301"}
    assert client.post("/cds-services/calcinosis-order-sign", json=body).status_code == 200


def test_an_order_select_selection_naming_no_draft_order_is_refused(client):
    body = _fixture("order-select")
    body["context"]["selections"] = ["MedicationRequest/draft-ca-gluconate", "MedicationRequest/not-drafted"]
    assert _expect_400(client.post("/cds-services/calcinosis-order-select", json=body)) == ["context.selections[1]"]


def _set(body: dict, path: tuple, value) -> dict:
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize("hook, path, value, location", [
    ("order-sign", ("fhirServer",), "http://[::1", "fhirServer"),
    ("order-sign", ("context", "draftOrders", "entry", 1, "resource", "code"), "abc",
     "context.draftOrders.entry[1].resource.code"),
    ("order-sign", ("context", "draftOrders", "entry", 1, "resource", "code"), 17,
     "context.draftOrders.entry[1].resource.code"),
    ("order-sign", ("context", "draftOrders", "entry", 1, "resource", "code"), [1],
     "context.draftOrders.entry[1].resource.code"),
    ("order-sign", ("context", "draftOrders", "entry", 1, "resource", "code", "coding"), {"system": "x"},
     "context.draftOrders.entry[1].resource.code.coding"),
    ("order-sign", ("context", "draftOrders", "entry", 1, "resource", "code", "coding", 0, "system"), ["x"],
     "context.draftOrders.entry[1].resource.code.coding[0].system"),
    ("order-sign", ("context", "draftOrders", "entry", 1, "resource", "code", "coding", 0, "system"), {"a": 1},
     "context.draftOrders.entry[1].resource.code.coding[0].system"),
    ("order-sign", ("context", "draftOrders", "entry"), 1.5, "context.draftOrders.entry"),
    ("patient-view", ("prefetch", "labs", "entry", 2, "resource", "resourceType"), ["a/b"],
     "prefetch.labs.entry[2].resource.resourceType"),
    ("patient-view", ("prefetch", "labs", "entry", 2, "resource", "resourceType"), {"a": 1},
     "prefetch.labs.entry[2].resource.resourceType"),
    ("patient-view", ("prefetch", "labs", "entry"), 1.5, "prefetch.labs.entry"),
    ("patient-view", ("prefetch", "labs", "entry", 0), "not an entry", "prefetch.labs.entry[0].resource"),
])
def test_malformed_fields_that_used_to_crash_are_refused_with_400_naming_them(client, hook, path, value, location):
    body = _set(_fixture(hook), path, value)
    assert location in _expect_400(client.post(f"/cds-services/calcinosis-{hook}", json=body))


# -- no input makes the service fail: every field of every example, replaced by each JSON type ----------

def _paths(value, prefix=()):
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


_JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**6, max_value=10**6),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.text(max_size=12),
    st.sampled_from(["Patient/x", "urn:uuid:1", "http://[::1", "https://ehr.example.org/fhir/../x", "2026-13-45"]),
    st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.dictionaries(st.text(max_size=5),
                                                                                    st.text(max_size=5))), max_size=3),
    st.dictionaries(st.sampled_from(["resourceType", "reference", "coding", "system", "code", "entry", "id"]),
                    st.one_of(st.none(), st.text(max_size=8), st.integers(), st.lists(st.integers(), max_size=2)),
                    max_size=3),
)
_HOOK_PATHS = {hook: list(_paths(_fixture(hook))) for hook in ("patient-view", "order-select", "order-sign")}


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory):
    import service.hooks.hook_call as module

    original = module.core_assess
    module.core_assess = FakeCore(metastatic_assessment("esrd-7301"))
    try:
        app = make_app({"CDS_REQUIRE_JWT": False,
                        "CDS_FEEDBACK_DB": str(tmp_path_factory.mktemp("fuzz") / "feedback.sqlite3")})
        yield app.test_client()
    finally:
        module.core_assess = original


@pytest.mark.parametrize("hook", sorted(_HOOK_PATHS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_single_field_replacement_in_a_hook_request_gives_a_server_error(fuzz_client, hook, data):
    path = data.draw(st.sampled_from(_HOOK_PATHS[hook]), label="path")
    value = data.draw(_JSON_VALUES, label="value")
    body = _set(_fixture(hook), path, value)
    response = fuzz_client.post(f"/cds-services/calcinosis-{hook}", json=body)
    assert response.status_code < 500, (path, value, response.get_data(as_text=True)[:300])


_FEEDBACK = {"feedback": [
    {"card": "6f1c2a5e-0000-4000-8000-000000000001", "outcome": "accepted",
     "acceptedSuggestions": [{"id": "6f1c2a5e-0000-4000-8000-000000000002"}],
     "outcomeTimestamp": "2026-11-15T09:05:00Z"},
    {"card": "6f1c2a5e-0000-4000-8000-000000000003", "outcome": "overridden",
     "overrideReason": {"reason": {"system": "https://calcinosis-cds.org/CodeSystem/cds-override-reason",
                                   "code": "already-evaluated", "display": "Already evaluated elsewhere"},
                        "userComment": "seen in clinic"}, "outcomeTimestamp": "2026-11-15T09:06:00+01:00"},
]}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_single_field_replacement_in_feedback_gives_a_server_error(fuzz_client, data):
    import copy

    path = data.draw(st.sampled_from(list(_paths(_FEEDBACK))), label="path")
    value = data.draw(_JSON_VALUES, label="value")
    body = _set(copy.deepcopy(_FEEDBACK), path, value)
    response = fuzz_client.post("/cds-services/calcinosis-order-select/feedback", json=body)
    assert response.status_code < 500, (path, value, response.get_data(as_text=True)[:300])


@pytest.mark.parametrize("path, what", [("/cds-services/calcinosis-patient-view", "a CDS Hooks request"),
                                        ("/cds-services/calcinosis-patient-view/feedback",
                                         "a CDS Hooks feedback request")])
def test_an_empty_body_is_refused_in_cds_hooks_terms(tmp_path, path, what):
    from tests.support.cds_app import make_app

    client = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3")}).test_client()
    response = client.post(path, data=b"", content_type="application/json")
    assert response.status_code == 400
    (issue,) = response.get_json()["issue"]
    assert issue["diagnostics"] == f"{what} must be a JSON object; the request body is empty"
    assert "FHIR Bundle" not in issue["diagnostics"]
