"""`calcinosis-cds fixtures load --fhir-server URL`: every fixture posted as a transaction Bundle."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from fhir.resources.R4B.bundle import Bundle

from conftest import FIXTURES_DIR
from service.cli import main
from service.fixture_loading import fixture_files, resources_of, transaction_of
from tests.support.real_fhir_server import run_sekmet

BASE = "https://fhir.example.org/fhir"
FILES = fixture_files(FIXTURES_DIR)


def _transaction_response(request):
    bundle = json.loads(request.body)
    return 200, {}, json.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": "201 Created"}} for _ in bundle["entry"]]})


def test_the_fixtures_are_every_assess_input_and_every_cds_hooks_request():
    names = [path.name for path in FILES]
    assert len([n for n in names if n.endswith("-request.json")]) == 3
    assert not any(n.endswith(".expected.json") or n == "MANIFEST.json" for n in names)
    assert len(names) == 3 + len(json.loads((FIXTURES_DIR / "assess" / "MANIFEST.json").read_text())["fixtures"])


@responses.activate
def test_load_posts_each_fixture_as_one_valid_transaction(capsys):
    responses.add_callback(responses.POST, BASE, callback=_transaction_response)
    assert main(["fixtures", "load", "--fhir-server", BASE + "/"]) == 0
    assert len(responses.calls) == len(FILES)
    for call, path in zip(responses.calls, FILES):
        assert call.request.headers["Content-Type"] == "application/fhir+json"
        bundle = json.loads(call.request.body)
        Bundle.model_validate(bundle)
        assert bundle["type"] == "transaction"
        sent = [entry["resource"] for entry in bundle["entry"]]
        kept = [r for _, r, _ in resources_of(json.loads(path.read_text())) if r["resourceType"] != "OperationOutcome"]
        assert len(sent) == len({(r["resourceType"], r.get("id")) if r.get("id") else id(r) for r in kept}), path.name
        for entry in bundle["entry"]:
            resource, request = entry["resource"], entry["request"]
            if resource.get("id"):
                assert request == {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
                assert entry["fullUrl"].startswith("urn:uuid:") or entry["fullUrl"] == (
                    f"{BASE}/{resource['resourceType']}/{resource['id']}")
            else:
                assert request == {"method": "POST", "url": resource["resourceType"]}
                assert entry["fullUrl"].startswith("urn:uuid:")
    out = capsys.readouterr().out
    assert f"{len(FILES)} of {len(FILES)} fixtures loaded into {BASE}/" in out
    assert "04-metastatic-esrd.json: 15 resources, HTTP 200" in out


@responses.activate
def test_a_refused_fixture_is_reported_and_fails_the_command(capsys):
    def refuse_one(request):
        if "p-milk-017" in request.body.decode():
            return 400, {}, json.dumps({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "processing", "diagnostics": "HAPI-0000: refused for the test"}]})
        return _transaction_response(request)

    responses.add_callback(responses.POST, BASE, callback=refuse_one)
    assert main(["fixtures", "load", "--fhir-server", BASE]) == 1
    out = capsys.readouterr().out
    assert "17-milk-alkali.json: 10 resources, HTTP 400: HAPI-0000: refused for the test" in out
    assert f"{len(FILES) - 1} of {len(FILES)} fixtures loaded" in out


@responses.activate
def test_wait_seconds_polls_metadata_until_the_server_answers(monkeypatch):
    monkeypatch.setattr("service.fixture_loading.time.sleep", lambda seconds: None)
    responses.get(f"{BASE}/metadata", status=503)
    responses.get(f"{BASE}/metadata", status=503)
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    responses.add_callback(responses.POST, BASE, callback=_transaction_response)
    assert main(["fixtures", "load", "--fhir-server", BASE, "--wait-seconds", "60"]) == 0
    assert [call.request.method for call in responses.calls[:3]] == ["GET", "GET", "GET"]


@responses.activate
def test_an_unreachable_server_fails_with_one_line(capsys):
    responses.add(responses.POST, BASE, body=requests.ConnectionError("refused"))
    assert main(["fixtures", "load", "--fhir-server", BASE]) == 1
    assert "the server could not be reached (ConnectionError)" in capsys.readouterr().out


def test_resources_that_are_not_r4_or_not_data_are_left_out_and_named():
    document = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}},
        {"resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                      "code": {"text": "calcium"}, "valueQuantity": {"value": "high"}}},
        {"resource": {"resourceType": "OperationOutcome", "issue": []}, "search": {"mode": "outcome"}},
        {"fullUrl": "urn:uuid:0b4f7a5e-4a45-4c55-9d2f-5d6f1c1f0a11",
         "resource": {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "code": {"text": "x"}}},
    ]}
    bundle, report = transaction_of(document, "x.json", BASE)
    assert [e["request"]["method"] for e in bundle["entry"]] == ["PUT", "POST"]
    assert bundle["entry"][1]["fullUrl"] == "urn:uuid:0b4f7a5e-4a45-4c55-9d2f-5d6f1c1f0a11"
    assert report.left_out == ["Bundle.entry[1] (not valid R4)", "Bundle.entry[2] (OperationOutcome)"]


@pytest.fixture(scope="module")
def fhir_base(tmp_path_factory):
    yield from run_sekmet(tmp_path_factory.mktemp("sekmet-load"))


def test_load_into_a_real_fhir_server(fhir_base, capsys):
    assert main(["fixtures", "load", "--fhir-server", fhir_base, "--wait-seconds", "30"]) == 0, capsys.readouterr().out
    headers = {"Accept": "application/fhir+json"}
    for path in ("Patient/p-ssc-001", "Patient/esrd-7301", "Observation/ca-7301"):
        response = requests.get(f"{fhir_base}/{path}", headers=headers, timeout=10)
        assert response.status_code == 200, path
    # a fixture whose entries are linked by urn:uuid: the server stored its resources and their links
    bundle = json.loads((FIXTURES_DIR / "assess" / "04-metastatic-esrd.json").read_text())
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    found = requests.get(f"{fhir_base}/Observation", params={"subject": f"Patient/{patient['id']}"},
                         headers=headers, timeout=10).json()
    observations = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert found.get("total", len(found.get("entry", []))) == len(observations)
    # loading again replaces what is there rather than adding copies
    assert main(["fixtures", "load", "--fhir-server", fhir_base]) == 0
    again = requests.get(f"{fhir_base}/Observation", params={"subject": f"Patient/{patient['id']}"},
                         headers=headers, timeout=10).json()
    assert again.get("total", len(again.get("entry", []))) == len(observations)


def test_a_hook_call_without_prefetch_reads_the_loaded_patient_from_the_server(fhir_base, tmp_path):
    """The README's try-out: after the load, the CDS Hooks fallback finds the example patient there."""
    from tests.support.cds_app import make_app

    assert main(["fixtures", "load", "--fhir-server", fhir_base]) == 0
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
                    "CDS_FHIR_SERVER_ALLOWLIST": [fhir_base]})
    call = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "fhirServer": fhir_base,
            "context": {"userId": "Practitioner/example", "patientId": "esrd-7301"}}
    response = app.test_client().post("/cds-services/calcinosis-patient-view", json=call)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    cards = response.get_json()["cards"]
    assert cards and cards[0]["summary"].startswith("Metastatic calcinosis likely")
