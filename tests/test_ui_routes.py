"""The /ui routes: the page and its files from the service itself, the example bundles, the trend,
the chart as SVG and in `$assess`, CDS Hooks from the page only in a sandbox, and report links."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid

import pytest

from tests.conftest import FIXTURES_DIR, assess_fixture
from tests.support.cds_app import make_app

STATIC = FIXTURES_DIR.parent / "service" / "web" / "static" / "ui"


def ui_app(tmp_path, **extra):
    return make_app({"CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"), "CDS_REQUIRE_JWT": False,
                     "EVALUATION_TIME": "2026-11-15T09:00:00Z", **extra})


@pytest.fixture
def ui_client(tmp_path):
    return ui_app(tmp_path).test_client()


def bundle_bytes(prefix: str) -> bytes:
    return assess_fixture(prefix).read_bytes()


def test_the_page_loads_only_from_its_own_origin(ui_client):
    response = ui_client.get("/ui/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe-eval" not in policy
    page = response.get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith(("/", "#", "data:")) for s in sources), sources
    for source in (s for s in sources if s.startswith("/ui/static/")):
        assert ui_client.get(source).status_code == 200, source


def test_every_control_of_the_page_has_a_label():
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    labelled = set(re.findall(r'<label for="([^"]+)"', page))
    controls = set(re.findall(r'<(?:select|textarea|input)[^>]*\bid="([^"]+)"', page))
    assert controls and controls <= labelled
    radios = re.findall(r'<label class="choice"><input type="radio"', page)
    assert len(radios) == 4  # each radio inside its label


def test_the_vendored_scripts_are_the_npm_files_recorded(ui_client):
    manifest = json.loads((STATIC / "vendor" / "VENDOR.json").read_text(encoding="utf-8"))
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest() == digest, name
        assert ui_client.get(f"/ui/static/vendor/{name}").status_code == 200
    assert (STATIC / "vendor" / "vega-interpreter.js").read_text(encoding="utf-8").startswith(
        "import { ascending, isString, DisallowedObjectProperties } from './vega-util.js';")


def test_the_example_bundles_are_listed_and_only_those_are_served(ui_client):
    listing = ui_client.get("/ui/fixtures").get_json()
    files = [item["file"] for item in listing["fixtures"]]
    assert "04-metastatic-esrd.json" in files and listing["now"] == "2026-11-15T09:00:00Z"
    assert ui_client.get("/ui/fixtures/04-metastatic-esrd.json").get_json()["resourceType"] == "Bundle"
    for name in ("MANIFEST.json", "04-metastatic-esrd.expected.json", "..%2FREADME.md", "..%2F..%2Fpyproject.toml"):
        response = ui_client.get(f"/ui/fixtures/{name}")
        assert response.status_code == 404 and response.get_json()["resourceType"] == "OperationOutcome"


def test_the_trend_route_gives_points_and_a_vega_spec(ui_client):
    response = ui_client.post("/ui/trend?width=900", data=bundle_bytes("04"), content_type="application/fhir+json")
    (patient,) = response.get_json()["patients"]
    assert patient["pointCount"] == 5 and {p["status"] for p in patient["points"]} == {"used"}
    assert patient["vega"]["$schema"].startswith("https://vega.github.io/schema/vega/")


def test_a_malformed_bundle_gets_the_services_operation_outcome(ui_client):
    for route in ("/ui/trend", "/ui/chart.svg", "/fhir/$assess?chart=svg"):
        response = ui_client.post(route, data=b'{"resourceType": "Bundle", "entry": [', content_type="application/fhir+json")
        assert response.status_code == 400, route
        assert "line 1 column" in response.get_json()["issue"][0]["diagnostics"]


def test_the_chart_as_svg(ui_client):
    response = ui_client.post("/ui/chart.svg", data=bundle_bytes("12"), content_type="application/fhir+json")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert response.get_data(as_text=True).startswith("<svg") and "default-src 'none'" in response.headers["Content-Security-Policy"]
    missing = ui_client.post("/ui/chart.svg?patient=Patient/nobody", data=bundle_bytes("12"), content_type="application/fhir+json")
    assert missing.status_code == 404


def test_assess_carries_the_chart_only_when_asked(ui_client):
    plain = ui_client.post("/fhir/$assess", data=bundle_bytes("04"), content_type="application/fhir+json").get_json()
    charted = ui_client.post("/fhir/$assess?chart=svg", data=bundle_bytes("04"), content_type="application/fhir+json").get_json()
    assert "DocumentReference" not in {e["resource"]["resourceType"] for e in plain["entry"]}
    extra = [e for e in charted["entry"] if e["resource"]["resourceType"] == "DocumentReference"]
    assert len(extra) == 1 and [e for e in charted["entry"] if e not in extra] == plain["entry"]
    refused = ui_client.post("/fhir/$assess?chart=png", data=bundle_bytes("04"), content_type="application/fhir+json")
    assert refused.status_code == 400 and "chart=svg" in refused.get_json()["issue"][0]["diagnostics"]


def test_assess_charts_a_patient_sent_without_id_or_full_url(ui_client):
    # Such a patient's RiskAssessment names it by a display only (no reference to match on).
    bundle = json.loads(bundle_bytes("04"))
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"].pop("id", None)
            entry.pop("fullUrl", None)
    response = ui_client.post("/fhir/$assess?chart=svg", json=bundle)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    entries = [e["resource"] for e in response.get_json()["entry"]]
    kinds = [resource["resourceType"] for resource in entries]
    assert kinds.count("DocumentReference") == 1
    risk = entries[kinds.index("RiskAssessment")]
    chart = entries[kinds.index("RiskAssessment") + 1]
    assert chart["resourceType"] == "DocumentReference" and chart["subject"] == risk["subject"]
    assert chart["context"]["related"][0]["reference"].endswith(risk["id"])


def test_a_hook_request_carries_the_bundles_patient_and_data(ui_client):
    bundle = json.loads(bundle_bytes("04"))
    response = ui_client.post("/ui/hook-request/order-select", json={"bundle": bundle, "draftOrders": ["iv-calcium-gluconate"]})
    request = response.get_json()["request"]
    uuid.UUID(request["hookInstance"])
    assert request["hook"] == "order-select" and request["context"]["patientId"] == "170cbf6b-56f0-50c0-b30f-2f94fc292362"
    assert request["context"]["selections"] == ["MedicationRequest/draft-ca-gluconate"]
    assert len(request["prefetch"]["labs"]["entry"]) == 7 and "fhirServer" not in request
    unknown = ui_client.post("/ui/hook-request/order-dispatch", json={"bundle": bundle})
    assert unknown.status_code == 422


def test_the_try_out_is_off_unless_the_sandbox_is_on(ui_client, tmp_path):
    bundle = json.loads(bundle_bytes("04"))
    request = ui_client.post("/ui/hook-request/patient-view", json={"bundle": bundle}).get_json()["request"]
    refused = ui_client.post("/ui/try/calcinosis-patient-view", json=request)
    assert refused.status_code == 403 and "UI_SANDBOX" in refused.get_json()["issue"][0]["diagnostics"]
    assert ui_client.get("/ui/settings").get_json()["sandbox"] is False

    sandbox = ui_app(tmp_path, UI_SANDBOX=True).test_client()
    cards = sandbox.post("/ui/try/calcinosis-patient-view", json=request).get_json()["cards"]
    assert cards and cards[0]["summary"].startswith("Metastatic calcinosis likely")
    with_server = dict(request, fhirServer="https://ehr.example.org/fhir")
    assert sandbox.post("/ui/try/calcinosis-patient-view", json=with_server).status_code == 400


def test_the_real_hook_routes_still_need_a_jwt_with_the_sandbox_on(tmp_path):
    client = make_app({"CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"), "UI_SANDBOX": True}).test_client()
    assert client.post("/cds-services/calcinosis-patient-view", json={}).status_code == 401


def test_report_links_are_off_by_default(ui_client):
    bundle = json.loads(bundle_bytes("04"))
    request = ui_client.post("/ui/hook-request/patient-view", json={"bundle": bundle}).get_json()["request"]
    cards = ui_client.post("/cds-services/calcinosis-patient-view", json=request).get_json()["cards"]
    assert all("/ui/reports/" not in link["url"] for card in cards for link in card.get("links", []))
    assert ui_client.get("/ui/reports/" + "A" * 43).status_code == 404


def test_a_report_link_is_unguessable_expires_and_stays_out_of_the_log(tmp_path, caplog):
    client = ui_app(tmp_path, UI_REPORT_LINKS=True, UI_REPORT_TTL_SECONDS=120,
                    PUBLIC_BASE_URL="https://cds.example.org").test_client()
    bundle = json.loads(bundle_bytes("04"))
    request = client.post("/ui/hook-request/patient-view", json={"bundle": bundle}).get_json()["request"]
    cards = client.post("/cds-services/calcinosis-patient-view", json=request).get_json()["cards"]
    urls = {link["url"] for card in cards for link in card["links"] if "/ui/reports/" in link["url"]}
    assert len(urls) == 1
    url = urls.pop()
    token = url.rsplit("/", 1)[-1]
    assert url.startswith("https://cds.example.org/ui/reports/") and len(token) >= 43
    assert "170cbf6b" not in url  # no patient id in the link
    with caplog.at_level(logging.INFO, logger="calcinosis_cds"):
        page = client.get(f"/ui/reports/{token}")
        trend = client.get(f"/ui/reports/{token}/trend").get_json()
        svg = client.get(f"/ui/reports/{token}/chart.svg")
    assert page.status_code == 200 and trend["patients"][0]["pointCount"] == 5
    assert svg.status_code == 200 and svg.get_data(as_text=True).startswith("<svg")
    assert token not in caplog.text and "/ui/reports/<token>" in caplog.text
    assert client.get(f"/ui/reports/{token[:-2]}xx").status_code == 404
