"""The fhirServer fallback stays bounded: one total deadline per hook call and a size cap per page."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import responses

from service.errors import DataUnavailableError
from service.hooks import hook_call
from service.hooks.fhir_fetch import FetchLimitExceeded, FhirFetcher
from tests.support.cds_app import FakeCore, make_app, metastatic_assessment

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "cds-hooks"
EHR = "https://ehr.example.org/fhir"
PATIENT_ID = "esrd-7301"
SERVICE = hook_call.load_services()["calcinosis-patient-view"]


def _request_missing(*keys: str, fhir_server: str = EHR) -> dict:
    body = json.loads((FIXTURES / "patient-view-request.json").read_text())
    for key in keys:
        del body["prefetch"][key]
    body["fhirServer"] = fhir_server
    return body


def _searchset(count: int) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "Observation", "id": f"o{n}", "status": "final",
                      "subject": {"reference": f"Patient/{PATIENT_ID}"}}, "search": {"mode": "match"}}
        for n in range(count)]}


class ManualClock:
    """A clock that only moves when the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SteppingClock:
    """Each reading of the clock is `step` seconds after the previous one."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _answer(body: dict, fetcher: FhirFetcher):
    return hook_call.answer_hook_call(SERVICE, body, fetcher=fetcher, base_url="https://cds.example.org",
                                      config={}, assess=FakeCore(metastatic_assessment(PATIENT_ID)))


def _fetcher(**limits) -> FhirFetcher:
    return FhirFetcher(allowlist=[EHR], connect_timeout=1, read_timeout=1, max_pages=10, **limits)


@responses.activate
def test_a_page_larger_than_the_cap_gives_412_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.setattr(hook_call, "core_assess", FakeCore(metastatic_assessment(PATIENT_ID)))
    responses.get(f"{EHR}/Observation", json=_searchset(200))
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
                    "CDS_FHIR_SERVER_ALLOWLIST": [EHR], "CDS_FHIR_MAX_RESPONSE_BYTES": 4096})
    response = app.test_client().post("/cds-services/calcinosis-patient-view", json=_request_missing("labs"))
    assert response.status_code == 412
    (issue,) = response.get_json()["issue"]
    assert issue["expression"] == ["prefetch.labs"]
    assert "larger than the 4096 bytes" in issue["diagnostics"]


@responses.activate
def test_a_page_within_the_cap_is_read_whole():
    responses.get(f"{EHR}/Observation", json=_searchset(3))
    result = _fetcher(max_response_bytes=4096).for_one_call().fetch(EHR, "Observation?patient=1", None)
    assert [r["id"] for r in result.resources] == ["o0", "o1", "o2"]


@responses.activate
def test_a_page_that_declares_a_length_above_the_cap_is_not_read():
    responses.get(f"{EHR}/Observation", body=json.dumps(_searchset(50)),
                  headers={"Content-Length": str(len(json.dumps(_searchset(50))))})
    with pytest.raises(FetchLimitExceeded, match="larger than"):
        _fetcher(max_response_bytes=100).for_one_call().fetch(EHR, "Observation?patient=1", None)


@responses.activate
def test_reads_beyond_the_total_deadline_give_412_and_later_keys_are_not_requested():
    clock = ManualClock()

    def slow_labs(request):
        clock.now += 25.0  # this read alone outlasts the 20 s allowed for the whole call
        return 200, {}, json.dumps(_searchset(1))

    responses.add_callback(responses.GET, f"{EHR}/Observation", callback=slow_labs)
    responses.get(f"{EHR}/Condition", json=_searchset(0))
    with pytest.raises(DataUnavailableError) as raised:
        _answer(_request_missing("labs", "conditions"), _fetcher(total_timeout=20, clock=clock))
    issues = raised.value.issues
    assert [issue.location for issue in issues] == ["prefetch.labs", "prefetch.conditions"]
    assert all("took longer than the 20 s allowed per call" in issue.diagnostics for issue in issues)
    assert len(responses.calls) == 1


@responses.activate
def test_the_deadline_starts_again_for_every_hook_call():
    responses.get(f"{EHR}/Observation", json=_searchset(1))
    fetcher = _fetcher(total_timeout=20, clock=SteppingClock(3.0))
    for _ in range(5):
        answer = _answer(_request_missing("labs"), fetcher)
        assert answer.cards


class _TricklingHandler(BaseHTTPRequestHandler):
    """Sends a valid searchset one byte at a time: every read is quick, the whole is slow."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}).encode() + b" " * 200
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.02)
        except OSError:
            pass  # the service hung up, as it should


@pytest.fixture
def trickling_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TricklingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_trickling_bytes_is_cut_off_at_the_total_deadline(trickling_server):
    fetcher = FhirFetcher(allowlist=[trickling_server], connect_timeout=1, read_timeout=1, max_pages=10,
                          total_timeout=0.5)
    with pytest.raises(DataUnavailableError) as raised:
        _answer(_request_missing("labs", fhir_server=trickling_server), fetcher)
    (issue,) = raised.value.issues
    assert issue.location == "prefetch.labs"
    assert "took longer than" in issue.diagnostics


@responses.activate
def test_a_prefetched_searchset_whose_next_page_is_too_large_gives_412_not_a_partial_answer():
    body = json.loads((FIXTURES / "patient-view-request.json").read_text())
    body["prefetch"]["labs"]["link"] = [{"relation": "next", "url": f"{EHR}/Observation?page=2"}]
    responses.get(f"{EHR}/Observation", json=_searchset(200))
    with pytest.raises(DataUnavailableError) as raised:
        _answer(body, _fetcher(max_response_bytes=4096))
    (issue,) = raised.value.issues
    assert issue.location == "prefetch.labs"
    assert "larger than" in issue.diagnostics
