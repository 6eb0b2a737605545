"""`calcinosis-cds serve` as a real process: start it on a free port, post a fixture, stop it."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle

from conftest import PROJECT_ROOT, assess_fixture
from tests.support.served_process import free_port, serve_command, stop, wait_until_answering


MAX_BODY_BYTES = 100_000  # above the fixture posted, below the oversized bodies sent


@pytest.fixture
def served(tmp_path):
    port = free_port()
    env = dict(os.environ,
               CALCINOSIS_CDS_FEEDBACK_DB=str(tmp_path / "feedback.sqlite3"),
               CALCINOSIS_EVALUATION_TIME="2026-11-15T09:00:00Z",
               CALCINOSIS_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
               PYTHONPATH=str(PROJECT_ROOT))
    process = subprocess.Popen(
        serve_command() + ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(process, f"{base}/healthz", seconds=60,
                             output=lambda: process.stdout.read().decode(errors="replace"))
        yield base
    finally:
        stop(process, seconds=20)


def test_real_server_assesses_a_posted_fixture_and_stops_cleanly(served):
    fixture = assess_fixture("04")
    response = requests.post(f"{served}/fhir/$assess", data=fixture.read_bytes(),
                             headers={"Content-Type": "application/fhir+json"}, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    bundle = response.json()
    Bundle.model_validate(bundle)
    kinds = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    assert "RiskAssessment" in kinds and "CarePlan" in kinds
    risk = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "RiskAssessment")
    assert risk["prediction"][0]["outcome"]["coding"][0]["code"] == "metastatic"

    bad = requests.post(f"{served}/fhir/$assess", data=b"[1,2", headers={"Content-Type": "application/json"},
                        timeout=10)
    assert bad.status_code == 400
    assert bad.json()["resourceType"] == "OperationOutcome"


def _chunked(data: bytes, size: int = 4096):
    """A generator body: requests sends it with Transfer-Encoding: chunked, no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_a_chunked_body_over_the_limit_is_refused_not_truncated(served):
    fixture = assess_fixture("04").read_bytes()
    oversized = fixture[:-1] + b" " * MAX_BODY_BYTES + b"}"
    response = requests.post(f"{served}/fhir/$assess", data=_chunked(oversized),
                             headers={"Content-Type": "application/fhir+json"}, timeout=30)
    assert response.status_code == 413
    assert response.json()["resourceType"] == "OperationOutcome"


def test_a_chunked_body_within_the_limit_is_assessed(served):
    response = requests.post(f"{served}/fhir/$assess", data=_chunked(assess_fixture("04").read_bytes()),
                             headers={"Content-Type": "application/fhir+json"}, timeout=30)
    assert response.status_code == 200
    assert response.json()["resourceType"] == "Bundle"


def test_keep_alive_connections_end_evenly_spread_over_the_workers_and_then_stay(tmp_path):
    """Each worker listens on its own socket (reuse_port) and the kernel spreads connections over them by
    a hash, so 16 keep-alive connections to 2 workers often land unevenly (7/9 or 5/11 in 4 of 6 runs
    without the balancing). A worker holding more than its share answers with `Connection: close`; the
    client's next connection is spread again, until each worker holds 8. From then on every connection
    stays with its worker."""
    import http.client
    import re

    port = free_port()
    log_path = tmp_path / "server.log"
    env = dict(os.environ, CALCINOSIS_CDS_FEEDBACK_DB=str(tmp_path / "feedback.sqlite3"), PYTHONPATH=str(PROJECT_ROOT))
    with log_path.open("wb") as log:
        process = subprocess.Popen(serve_command() + ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                                   cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    rounds, closed_per_round = 0, []
    try:
        deadline = time.monotonic() + 90
        while log_path.read_text(errors="replace").count("Booting worker with pid") < 2 or not _answers(port):
            if process.poll() is not None:
                pytest.fail(f"server exited early:\n{log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                pytest.fail("the two workers did not answer within 90 s")
            time.sleep(0.3)
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(16)]
        # Until a whole round passes without a close, then three more rounds: http.client opens a new
        # connection by itself when the server closed the last one.
        calm_rounds = 0
        while calm_rounds < 3 and rounds < 40:
            closed = 0
            for number, connection in enumerate(connections):
                connection.request("GET", "/healthz", headers={"X-Request-ID": f"c{number}-r{rounds}"})
                response = connection.getresponse()
                response.read()
                assert response.status == 200
                closed += response.getheader("Connection", "").lower() == "close"
            closed_per_round.append(closed)
            calm_rounds = calm_rounds + 1 if closed == 0 and rounds > 0 else 0
            rounds += 1
        for connection in connections:
            connection.close()
    finally:
        stop(process, seconds=20)
    assert calm_rounds == 3, closed_per_round
    answered_by = {request_id: pid for pid, request_id in
                   re.findall(r"\[(\d+)\] INFO calcinosis_cds GET /healthz 200 \S+ id=(c\d+-r\d+)", log_path.read_text())}
    assert len(answered_by) == 16 * rounds
    last_rounds = range(rounds - 3, rounds)
    per_connection = {number: {answered_by[f"c{number}-r{r}"] for r in last_rounds} for number in range(16)}
    assert all(len(pids) == 1 for pids in per_connection.values()), per_connection  # keep-alive held
    held = [next(iter(pids)) for pids in per_connection.values()]
    assert sorted(held.count(pid) for pid in set(held)) == [8, 8], per_connection


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False
