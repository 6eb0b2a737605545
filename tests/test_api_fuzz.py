"""The fuzz profile: schemathesis across every operation of /openapi.json, no 5xx, answers as documented.

About 2,000 generated requests (positive and negative, and stateful scenarios that give
feedback on the cards a hook call returned), in process. A long run of the same harness:
`python -m tests.support.api_fuzz --requests 20000`.
"""

from __future__ import annotations

import json

import pytest

from service.hooks import hook_call
from service.web.openapi_document import DOCUMENT_FILE
from tests.support.api_fuzz import KNOWN_FAILURES, FuzzReport, _known_as, replay, run_fuzz

# Per operation and generation mode, and stateful scenarios: about 2,100 requests in all.
CI_EXAMPLES_PER_OPERATION = 70
CI_STATEFUL_SCENARIOS = 50


def _documented_operations() -> set[str]:
    document = json.loads(DOCUMENT_FILE.read_text(encoding="utf-8"))
    return {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item
            if method in ("get", "post", "put", "patch", "delete")}


@pytest.fixture(scope="module")
def ci_report() -> FuzzReport:
    return run_fuzz(examples_per_operation=CI_EXAMPLES_PER_OPERATION, stateful_scenarios=CI_STATEFUL_SCENARIOS)


def test_the_fuzz_profile_sends_at_least_2000_requests_to_every_operation(ci_report):
    print(ci_report.summary())  # shown with -s, and in the report of a failure
    assert ci_report.requests >= 2000
    assert set(ci_report.per_operation) == _documented_operations()
    assert min(ci_report.per_operation.values()) >= CI_EXAMPLES_PER_OPERATION


def test_no_generated_request_gets_a_5xx(ci_report):
    assert ci_report.unknown_server_errors == [], ci_report.summary()


def test_every_answer_is_as_the_document_describes_it(ci_report):
    assert ci_report.mismatches == {}, ci_report.summary()


def test_signed_requests_reach_past_authentication_and_feedback_follows_a_card(ci_report):
    for service_id in hook_call.load_services():
        assert ci_report.per_status[(f"POST /cds-services/{service_id}", 200)] > 0, service_id
    feedback_stored = sum(count for (operation, status), count in ci_report.per_status.items()
                          if operation.endswith("/feedback") and status == 200)
    assert feedback_stored > 0, ci_report.summary()


def test_the_harness_reports_a_5xx_with_the_exception_behind_it(monkeypatch):
    from service.web import fhir_api

    def broken_statement(**kwargs):
        raise ZeroDivisionError("the statement failed")

    monkeypatch.setattr(fhir_api, "capability_statement", broken_statement)
    report = run_fuzz(examples_per_operation=3, stateful_scenarios=1, operations={"GET /fhir/metadata"})
    assert set(report.per_operation) == {"GET /fhir/metadata"}
    assert len(report.server_errors) == report.requests > 0
    error = report.server_errors[0]
    assert error.exception.startswith("ZeroDivisionError at service/web/fhir_api.py:")
    assert error.known_as is None
    assert "curl" in error.reproduce and "/fhir/metadata" in error.reproduce


@pytest.mark.parametrize("exception, body, expected", [
    ("TypeError at service/pipeline/ingest.py:1",
     {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": ["Patient"]}}]},
     "non-string-resourceType"),
    ("TypeError at service/pipeline/ingest.py:1",
     {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient"}}]},
     None),
    ("KeyError at service/pipeline/ingest.py:1",
     {"entry": [{"resource": {"resourceType": {"x": 1}}}]}, None),
    ("RecursionError at service/hooks/draft_orders.py:1",
     {"context": {"draftOrders": {"entry": [{"resource": {"code": json.loads("[" * 200 + "]" * 200)}}]}}},
     "deep-nesting-in-draft-orders"),
    ("RecursionError at service/hooks/draft_orders.py:1", {"context": {}}, None),
])
def test_a_known_failure_is_recognized_only_by_its_exception_and_its_input(exception, body, expected):
    assert set(KNOWN_FAILURES) == {"non-string-resourceType", "deep-nesting-in-draft-orders"}
    assert _known_as(exception, body) == expected


# One request that meets each known failure, as the fuzz would send it.
_DEEP = json.loads("[" * 900 + "]" * 900)
KNOWN_FAILURE_REQUESTS = {
    "non-string-resourceType": ("POST", "/fhir/$assess", {
        "resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": ["Patient"]}}]}),
    "deep-nesting-in-draft-orders": ("POST", "/cds-services/calcinosis-order-sign", {
        "hook": "order-sign", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": "pat-1", "draftOrders": {
            "resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": {"resourceType": "MedicationRequest", "code": {"extension": _DEEP}}}]}},
        "prefetch": {key: None for key in ("patient", "labs", "conditions", "medications", "procedures")}}),
}


@pytest.mark.parametrize("name", sorted(KNOWN_FAILURE_REQUESTS))
def test_a_known_failure_met_by_the_fuzz_is_reported_as_known(name):
    assert set(KNOWN_FAILURE_REQUESTS) == set(KNOWN_FAILURES)
    report = replay(*KNOWN_FAILURE_REQUESTS[name])
    assert report.requests == 1
    assert report.unknown_server_errors == []
    assert [error.known_as for error in report.server_errors] in ([name], [])  # [] once it is fixed


@pytest.mark.xfail(strict=True, reason="a known 5xx, due to be fixed: when this passes, delete its KNOWN_FAILURES "
                                       "entry, its KNOWN_FAILURE_REQUESTS entry and this marker")
@pytest.mark.parametrize("name", sorted(KNOWN_FAILURE_REQUESTS))
def test_a_known_failure_is_fixed(name):
    assert replay(*KNOWN_FAILURE_REQUESTS[name]).server_errors == []
