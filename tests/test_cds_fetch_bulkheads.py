"""A slow FHIR server holds a few threads, never all of them, and never past the call's deadline.

Real servers on 127.0.0.1: one that never answers and one that trickles its headers byte by byte.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from service.errors import DataUnavailableError
from service.hooks import hook_call
from service.hooks.fhir_fetch import FetchError, FetchLimitExceeded, FetchServerBusy, FhirFetcher
from tests.support.cds_app import FakeCore, make_app, metastatic_assessment
from tests.support.stalling_servers import HangingServer, HeaderTricklingServer

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "cds-hooks"
PATIENT_ID = "esrd-7301"
SERVICE = hook_call.load_services()["calcinosis-patient-view"]


def _request_missing(fhir_server: str, *keys: str) -> dict:
    body = json.loads((FIXTURES / "patient-view-request.json").read_text())
    for key in keys:
        del body["prefetch"][key]
    body["fhirServer"] = fhir_server
    return body


@pytest.fixture
def hanging():
    server = HangingServer()
    yield server
    server.close()


def _hold_one_read(fetcher: FhirFetcher, server: HangingServer) -> threading.Thread:
    """A read waiting on the hanging server in another thread, once the server has its connection."""
    def read() -> None:
        try:
            fetcher.for_one_call().fetch(server.base, "Observation?patient=1", None)
        except FetchError:
            pass  # the test closes the server (or the deadline passes): either ends the read

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert server.connected.wait(10)
    return thread


def test_a_read_beyond_the_servers_slots_is_refused_at_once_as_busy(hanging):
    fetcher = FhirFetcher(allowlist=[hanging.base], connect_timeout=1, read_timeout=5, max_pages=10,
                          total_timeout=5, max_concurrent_reads=1)
    holder = _hold_one_read(fetcher, hanging)
    with pytest.raises(FetchServerBusy, match="is busy"):
        fetcher.for_one_call().fetch(hanging.base, "Condition?patient=1", None)
    assert hanging.accepted == 1  # the refused read never reached the server
    hanging.close()
    holder.join(10)


def test_every_path_on_one_server_shares_its_slots(hanging):
    """Another fhirServer path under the allowlisted base reaches the same server: no extra slots."""
    fetcher = FhirFetcher(allowlist=[hanging.base], connect_timeout=1, read_timeout=5, max_pages=10,
                          total_timeout=5, max_concurrent_reads=1)
    holder = _hold_one_read(fetcher, hanging)
    with pytest.raises(FetchServerBusy):
        fetcher.for_one_call().fetch(f"{hanging.base}/r4", "Condition?patient=1", None)
    hanging.close()
    holder.join(10)


def test_a_hook_call_finding_the_server_busy_gets_412_saying_so(hanging):
    fetcher = FhirFetcher(allowlist=[hanging.base], connect_timeout=1, read_timeout=5, max_pages=10,
                          total_timeout=5, max_concurrent_reads=1)
    holder = _hold_one_read(fetcher, hanging)
    with pytest.raises(DataUnavailableError) as raised:
        hook_call.answer_hook_call(SERVICE, _request_missing(hanging.base, "labs"), fetcher=fetcher,
                                   base_url="https://cds.example.org", config={},
                                   assess=FakeCore(metastatic_assessment(PATIENT_ID)))
    (issue,) = raised.value.issues
    assert raised.value.status == 412
    assert issue.code == "throttled" and issue.location == "prefetch.labs"
    assert "busy" in issue.diagnostics and "CDS_FHIR_MAX_CONCURRENT_READS_PER_SERVER" in issue.diagnostics
    hanging.close()
    holder.join(10)


def test_the_slot_is_given_back_when_a_read_ends(hanging):
    fetcher = FhirFetcher(allowlist=[hanging.base], connect_timeout=1, read_timeout=5, max_pages=10,
                          total_timeout=0.3, max_concurrent_reads=1)
    for _ in range(3):  # each read times out and frees the one slot for the next
        with pytest.raises(FetchLimitExceeded, match="took longer than"):
            fetcher.for_one_call().fetch(hanging.base, "Observation?patient=1", None)
    assert hanging.accepted == 3


def test_the_busy_answer_reaches_the_client_as_an_operation_outcome(hanging, tmp_path):
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
                    "CDS_FHIR_SERVER_ALLOWLIST": [hanging.base], "CDS_FHIR_MAX_CONCURRENT_READS_PER_SERVER": 1,
                    "CDS_FHIR_TOTAL_TIMEOUT_SECONDS": 5})
    from service.web.cds_hooks import _EXTENSION
    holder = _hold_one_read(app.extensions[_EXTENSION].fetcher, hanging)
    response = app.test_client().post("/cds-services/calcinosis-patient-view",
                                      json=_request_missing(hanging.base, "labs"))
    assert response.status_code == 412
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [issue["code"] for issue in outcome["issue"]] == ["throttled"]
    hanging.close()
    holder.join(10)


def test_a_server_trickling_its_headers_is_cut_off_at_the_total_deadline():
    """Each byte comes well inside the read timeout, so only the total deadline can end the read."""
    server = HeaderTricklingServer(interval=0.05, duration=20.0)
    try:
        fetcher = FhirFetcher(allowlist=[server.base], connect_timeout=1, read_timeout=1, max_pages=10,
                              total_timeout=0.5)
        with pytest.raises(FetchLimitExceeded, match="took longer than the 0.5 s allowed"):
            fetcher.for_one_call().fetch(server.base, "Observation?patient=1", None)
        assert server.client_left_early.wait(10)  # the connection was cut, not left to trickle on
    finally:
        server.close()


def test_a_silent_server_ends_in_the_deadline_message_not_a_read_timeout(hanging):
    fetcher = FhirFetcher(allowlist=[hanging.base], connect_timeout=1, read_timeout=30, max_pages=10,
                          total_timeout=0.3)
    with pytest.raises(FetchLimitExceeded, match="took longer than the 0.3 s allowed"):
        fetcher.for_one_call().fetch(hanging.base, "Observation?patient=1", None)
