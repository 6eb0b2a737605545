"""`calcinosis-cds serve` as a real process: start it on a free port, post a fixture, stop it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle

from conftest import PROJECT_ROOT, assess_fixture


MAX_BODY_BYTES = 100_000  # above the fixture posted, below the oversized bodies sent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli() -> list[str]:
    script = shutil.which("calcinosis-cds", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "service.cli"]


@pytest.fixture
def served(tmp_path):
    port = _free_port()
    env = dict(os.environ,
               CALCINOSIS_CDS_FEEDBACK_DB=str(tmp_path / "feedback.sqlite3"),
               CALCINOSIS_EVALUATION_TIME="2026-11-15T09:00:00Z",
               CALCINOSIS_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
               PYTHONPATH=str(PROJECT_ROOT))
    process = subprocess.Popen(
        _cli() + ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited early:\n{process.stdout.read().decode(errors='replace')}")
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # still booting
                pass
            if time.monotonic() > deadline:
                pytest.fail("server did not answer within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
