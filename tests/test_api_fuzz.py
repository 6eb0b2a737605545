"""The fuzz profile: schemathesis across every operation of /openapi.json, no 5xx, answers as documented.

About 6,300 generated requests (positive and negative, and stateful scenarios that give
feedback on the cards a hook call returned), in process. A long run of the same harness:
`python -m tests.support.api_fuzz --requests 20000`.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT
from service.hooks import hook_call
from service.web.openapi_document import DOCUMENT_FILE
from tests.support.api_fuzz import KNOWN_FAILURES, FuzzReport, replay, run_fuzz

# Per operation and generation mode, and stateful scenarios: about 6,300 requests in all (37 operations).
CI_EXAMPLES_PER_OPERATION = 70
CI_STATEFUL_SCENARIOS = 50


def _documented_operations() -> set[str]:
    document = json.loads(DOCUMENT_FILE.read_text(encoding="utf-8"))
    return {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item
            if method in ("get", "post", "put", "patch", "delete")}


# Run in an interpreter of its own: with the whole suite collected (every test module imported), the
# same seeded run generated other requests and at times stored no feedback; alone it does not.
_CI_RUN = """
import pickle, sys
from tests.support.api_fuzz import run_fuzz
report = run_fuzz(examples_per_operation=int(sys.argv[2]), stateful_scenarios=int(sys.argv[3]))
open(sys.argv[1], "wb").write(pickle.dumps(report))
"""


@pytest.fixture(scope="module")
def ci_report(tmp_path_factory) -> FuzzReport:
    saved = tmp_path_factory.mktemp("fuzz") / "report.pickle"
    done = subprocess.run([sys.executable, "-c", _CI_RUN, str(saved), str(CI_EXAMPLES_PER_OPERATION),
                           str(CI_STATEFUL_SCENARIOS)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    return pickle.loads(saved.read_bytes())


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


# The requests that met the two 5xx the fuzz once knew (a non-string resourceType in the pipeline,
# a value nested hundreds of levels deep in a draft order), as the fuzz would send them.
_DEEP = json.loads("[" * 900 + "]" * 900)
ONCE_FAILING_REQUESTS = {
    "non-string-resourceType": ("POST", "/fhir/$assess", {
        "resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": ["Patient"]}}]}),
    "deep-nesting-in-draft-orders": ("POST", "/cds-services/calcinosis-order-sign", {
        "hook": "order-sign", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": "pat-1", "draftOrders": {
            "resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": {"resourceType": "MedicationRequest", "code": {"extension": _DEEP}}}]}},
        "prefetch": {key: None for key in ("patient", "labs", "conditions", "medications", "procedures")}}),
}


def test_no_failure_is_known_any_more():
    assert KNOWN_FAILURES == {}


@pytest.mark.parametrize("name", sorted(ONCE_FAILING_REQUESTS))
def test_a_once_known_failure_stays_fixed(name):
    report = replay(*ONCE_FAILING_REQUESTS[name])
    assert report.requests == 1
    assert report.server_errors == []
    [(_operation, status)] = report.per_status
    assert 400 <= status < 500, status
    assert report.mismatches == {}, report.summary()
