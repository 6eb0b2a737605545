"""/readyz and /metrics: what an operator's probes and Prometheus read."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import requests
import responses

from conftest import FIXTURES_DIR, PROJECT_ROOT, assess_fixture
from tests.support.served_process import free_port, serve_command, stop, wait_until_answering
from service import create_app
from service.config import load_config
from tests.support.cds_app import make_app

EHR = "https://ehr.example.org/fhir"
DEFAULTS = load_config(None)


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in Prometheus text, or None when it is absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_readyz_is_ready_with_compiled_rules_and_writable_storage(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["checks"]["rules"] == {"ok": True, "compiled": "CalcinosisCutis 1.0.0"}
    assert body["checks"]["storage"] == {"ok": True}


def test_readyz_fails_when_the_rule_files_stop_compiling(tmp_path):
    rules = tmp_path / "Rules.cql"
    shutil.copy(DEFAULTS["RULE_LIBRARY"], rules)
    app = create_app({"RULE_LIBRARY": str(rules), "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
                      "CDS_REQUIRE_JWT": False})
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    rules.write_text(rules.read_text(encoding="utf-8") + '\ndefine "Broken": "No Such Define" + 1\n', encoding="utf-8")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not ready" and body["checks"]["rules"]["ok"] is False
    assert body["checks"]["rules"]["compiled"] == "CalcinosisCutis 1.0.0"  # still serving what it compiled
    assert any("Rules.cql" in error and "No Such Define" in error for error in body["checks"]["rules"]["errors"])
    assert client.get("/healthz").status_code == 200  # alive all the same
    shutil.copy(DEFAULTS["RULE_LIBRARY"], rules)
    assert client.get("/readyz").status_code == 200


def test_readyz_fails_when_the_feedback_storage_cannot_be_written(tmp_path):
    storage = tmp_path / "volume"
    app = make_app({"CDS_FEEDBACK_DB": str(storage / "f.sqlite3"), "CDS_REQUIRE_JWT": False})
    assert app.test_client().get("/readyz").status_code == 200
    shutil.rmtree(storage)  # the volume went away while the service runs
    storage.write_text("a file where the storage folder should be")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    storage = response.get_json()["checks"]["storage"]
    assert storage["ok"] is False and "f.sqlite3" in storage["errors"][0]


def _hook_call_reading_labs_from_the_server() -> dict:
    body = json.loads((FIXTURES_DIR / "cds-hooks" / "patient-view-request.json").read_text())
    del body["prefetch"]["labs"]
    body["fhirServer"] = EHR
    return body


@responses.activate
def test_metrics_expose_requests_latency_rule_time_cards_and_upstream_reads(tmp_path):
    responses.get(f"{EHR}/Observation", json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    app = make_app({"CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"), "CDS_REQUIRE_JWT": False,
                    "CDS_FHIR_SERVER_ALLOWLIST": [EHR]})
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)
    assert client.post("/fhir/$assess", data=assess_fixture("04").read_bytes(),
                       content_type="application/fhir+json").status_code == 200
    assert client.get("/fhir/ValueSet/no-such-id").status_code == 404
    cards = client.post("/cds-services/calcinosis-patient-view", json=_hook_call_reading_labs_from_the_server())
    assert cards.status_code == 200, cards.get_data(as_text=True)[:300]
    responses.replace(responses.GET, f"{EHR}/Observation", status=500)
    assert client.post("/cds-services/calcinosis-patient-view",
                       json=_hook_call_reading_labs_from_the_server()).status_code == 412

    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)

    def grew(name: str, **labels: str) -> float:
        return (_sample(text, name, **labels) or 0) - (_sample(before, name, **labels) or 0)

    assert grew("calcinosis_http_requests_total", method="POST", route="/fhir/$assess", status="200") == 1
    assert grew("calcinosis_http_request_duration_seconds_count", method="POST", route="/fhir/$assess",
                status="200") == 1
    # a path never becomes a label: the 404 above is counted under its route rule
    assert grew("calcinosis_http_requests_total", method="GET", route="/fhir/ValueSet/<resource_id>",
                status="404") == 1
    assert "no-such-id" not in text
    assert grew("calcinosis_rule_evaluation_seconds_count") >= 2  # the $assess patient and the hook's
    indicators = [card["indicator"] for card in cards.get_json()["cards"]]
    for indicator in set(indicators):
        assert grew("calcinosis_cds_cards_total", indicator=indicator) == indicators.count(indicator)
    origin = "https://ehr.example.org"
    assert grew("calcinosis_fhir_upstream_request_duration_seconds_count", server=origin, outcome="ok") == 1
    assert grew("calcinosis_fhir_upstream_request_duration_seconds_count", server=origin, outcome="failure") == 1
    assert grew("calcinosis_fhir_upstream_failures_total", server=origin, outcome="failure") == 1


def test_metrics_of_a_served_instance_add_up_every_worker(tmp_path):
    """`serve` runs several gunicorn workers; with multiprocess mode any scrape reports all their requests."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(CALCINOSIS_CDS_FEEDBACK_DB=str(tmp_path / "feedback.sqlite3"), PYTHONPATH=str(PROJECT_ROOT))
    process = subprocess.Popen(serve_command() + ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                               cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(process, f"{base}/readyz", seconds=120)
        requests_sent = 12
        for _ in range(requests_sent):  # a new connection each: the workers share them out
            assert requests.get(f"{base}/fhir/metadata", timeout=10).status_code == 200
        for _ in range(4):
            text = requests.get(f"{base}/metrics", timeout=10).text
            assert _sample(text, "calcinosis_http_requests_total", method="GET", route="/fhir/metadata",
                           status="200") == requests_sent
    finally:
        stop(process, seconds=20)


@pytest.mark.parametrize("route", ["/healthz", "/readyz", "/metrics"])
def test_operations_routes_are_open_and_carry_a_request_id(client, route):
    response = client.get(route)
    assert response.status_code == 200
    assert response.headers["X-Request-ID"]
