"""The served process stays responsive while a FHIR server hangs under 20 hook calls at once.

Acceptance test of the bulkheads: gunicorn serves the app as in production (`calcinosis-cds serve`),
a real server on 127.0.0.1 accepts connections and never answers, and 20 hook calls that must read
from it are in flight. The reads beyond CDS_FHIR_MAX_CONCURRENT_READS_PER_SERVER are refused at once
(412, busy), so threads stay free: /healthz answers within a second and $assess still assesses.
This is the one test with a time bound, a generous one, because the requirement is about time.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from conftest import PROJECT_ROOT, assess_fixture
from tests.support.served_process import free_port, serve_command, stop, wait_until_answering
from tests.support.stalling_servers import HangingServer

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "cds-hooks"
HOOK_CALLS = 20


@pytest.fixture
def hanging():
    server = HangingServer()
    yield server
    server.close()


@pytest.fixture
def served_against(hanging, tmp_path):
    port = free_port()
    env = dict(os.environ,
               CALCINOSIS_CDS_FEEDBACK_DB=str(tmp_path / "feedback.sqlite3"),
               CALCINOSIS_EVALUATION_TIME="2026-11-15T09:00:00Z",
               CALCINOSIS_CDS_REQUIRE_JWT="false",
               CALCINOSIS_CDS_FHIR_SERVER_ALLOWLIST=json.dumps([hanging.base]),
               CALCINOSIS_CDS_FHIR_MAX_CONCURRENT_READS_PER_SERVER="2",
               CALCINOSIS_CDS_FHIR_TOTAL_TIMEOUT_SECONDS="8",
               CALCINOSIS_CDS_FHIR_READ_TIMEOUT_SECONDS="8",
               PYTHONPATH=str(PROJECT_ROOT))
    process = subprocess.Popen(
        serve_command() + ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--threads", "8"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(process, f"{base}/healthz", seconds=60)
        yield base
    finally:
        stop(process, seconds=30)


def _hook_call(base: str, fhir_server: str) -> requests.Response:
    body = json.loads((FIXTURES / "patient-view-request.json").read_text())
    del body["prefetch"]["labs"]  # read from fhirServer, which hangs
    body["fhirServer"] = fhir_server
    return requests.post(f"{base}/cds-services/calcinosis-patient-view", json=body, timeout=60)


def test_healthz_and_assess_answer_while_20_hook_calls_wait_on_a_hanging_server(served_against, hanging):
    with ThreadPoolExecutor(HOOK_CALLS) as pool:
        calls = [pool.submit(_hook_call, served_against, hanging.base) for _ in range(HOOK_CALLS)]
        assert hanging.connected.wait(30)
        time.sleep(1.0)  # every call has reached the service: two wait on the server, the rest were refused

        started = time.monotonic()
        health = requests.get(f"{served_against}/healthz", timeout=30)
        health_seconds = time.monotonic() - started
        assessed = requests.post(f"{served_against}/fhir/$assess", data=assess_fixture("04").read_bytes(),
                                 headers={"Content-Type": "application/fhir+json"}, timeout=30)
        still_waiting = sum(not call.done() for call in calls)

        answers = [call.result() for call in calls]

    assert health.status_code == 200
    assert health_seconds < 1.0, f"/healthz took {health_seconds:.2f} s"
    assert assessed.status_code == 200 and assessed.json()["resourceType"] == "Bundle"
    assert still_waiting >= 1  # the answers above came while reads were still hanging
    assert hanging.accepted == 2  # never more reads on the server than the bound
    assert all(answer.status_code == 412 for answer in answers)
    codes = sorted(answer.json()["issue"][0]["code"] for answer in answers)
    assert codes == ["throttled"] * (HOOK_CALLS - 2) + ["too-costly"] * 2
