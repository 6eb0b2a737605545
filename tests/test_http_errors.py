"""Every malformed request gets a 4xx OperationOutcome that says what is wrong and where."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

ASSESS = "/fhir/$assess"


def _outcome(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/fhir+json"
    body = response.get_json()
    OperationOutcome.model_validate(body)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"], "an OperationOutcome must carry at least one issue"
    return body


def _text(outcome: dict) -> str:
    return " ".join(
        f"{issue.get('diagnostics', '')} {' '.join(issue.get('expression', []))} {' '.join(issue.get('location', []))}"
        for issue in outcome["issue"]
    )


def test_invalid_json_is_400_with_position(client):
    outcome = _outcome(client.post(ASSESS, data=b'{"resourceType": "Bundle",', content_type="application/fhir+json"), 400)
    assert "not valid JSON" in _text(outcome)
    assert "line 1" in _text(outcome)


def test_empty_body_is_400(client):
    outcome = _outcome(client.post(ASSESS, data=b"", content_type="application/fhir+json"), 400)
    assert "empty" in _text(outcome)


def test_json_array_is_422_saying_a_bundle_was_expected(client):
    outcome = _outcome(client.post(ASSESS, data=b'[{"resourceType": "Bundle"}]', content_type="application/json"), 422)
    assert "array" in _text(outcome).lower()
    assert "Bundle" in _text(outcome)


def test_patient_instead_of_bundle_is_422_naming_what_was_sent(client):
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    outcome = _outcome(client.post(ASSESS, json=patient), 422)
    assert "Patient" in _text(outcome)
    assert "Bundle" in _text(outcome)


def test_entry_that_is_not_a_list_is_422_at_bundle_entry(client):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": {"resource": {"resourceType": "Patient"}}}
    outcome = _outcome(client.post(ASSESS, json=bundle), 422)
    assert "Bundle.entry" in _text(outcome)


def test_resource_without_resource_type_is_422_at_its_entry(client):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:6c7f3c1e-93a5-4c0e-9f6a-1f0e2c3d4b5a",
         "resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}},
        {"resource": {"id": "o1", "status": "final"}},
    ]}
    outcome = _outcome(client.post(ASSESS, json=bundle), 422)
    assert "Bundle.entry[1].resource.resourceType" in _text(outcome)
    assert "no resourceType" in _text(outcome)


def test_body_over_the_size_limit_is_413(tmp_path):
    from service import create_app

    small = create_app({"MAX_BODY_BYTES": 1000, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3")}).test_client()
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": f"p{i}"}} for i in range(100)]}
    outcome = _outcome(small.post(ASSESS, json=bundle), 413)
    assert "limit" in _text(outcome)


def test_100000_levels_of_nested_arrays_is_a_4xx_not_a_crash(client):
    deep = b"[" * 100_000 + b"]" * 100_000
    outcome = _outcome(client.post(ASSESS, data=deep, content_type="application/fhir+json"), 400)
    assert "nested" in _text(outcome)


def test_deep_nesting_inside_a_resource_is_a_4xx_not_a_crash(client):
    deep = (b'{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Observation", "extension": '
            + b"[" * 5000 + b"]" * 5000 + b"}}]}")
    response = client.post(ASSESS, data=deep, content_type="application/fhir+json")
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize("media_type", ["application/fhir+xml", "application/xml", "text/xml"])
def test_xml_body_is_415(client, media_type):
    xml = b'<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/></Bundle>'
    outcome = _outcome(client.post(ASSESS, data=xml, content_type=media_type), 415)
    assert "application/fhir+json" in _text(outcome)


def test_unknown_route_is_a_404_operation_outcome(client):
    _outcome(client.get("/fhir/Nothing/here"), 404)


def test_get_on_assess_is_405_with_allow_header(client):
    response = client.get(ASSESS)
    _outcome(response, 405)
    assert "POST" in response.headers["Allow"]


def test_bundle_of_unsupported_type_is_422(client):
    outcome = _outcome(client.post(ASSESS, json={"resourceType": "Bundle", "type": "history", "entry": []}), 422)
    assert "history" in _text(outcome)


def test_a_bundle_of_thousands_of_bare_patients_is_refused_before_any_work(client):
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": {"resourceType": "Patient", "id": f"p{i}"}} for i in range(10_000)]}
    outcome = _outcome(client.post(ASSESS, json=bundle), 413)
    assert "10000 Patient resources" in _text(outcome)
    assert "split the Bundle" in _text(outcome)


def test_patient_limit_is_configurable(tmp_path):
    from service import create_app

    small = create_app({"MAX_PATIENTS_PER_REQUEST": 2, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3")}).test_client()
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": {"resourceType": "Patient", "id": f"p{i}"}} for i in range(3)]}
    _outcome(small.post(ASSESS, json=bundle), 413)
    bundle["entry"] = bundle["entry"][:2]
    assert small.post(ASSESS, json=bundle).status_code == 200


def test_an_unexpected_failure_is_a_500_outcome_that_logs_no_input_values(client, monkeypatch, caplog):
    from service.pipeline import assess

    secret = "-".join(["Jane", "Doe", "1970"])  # built at run time: absent from the source lines

    def explode(self, bundle, *, now=None):
        raise ValueError(f"input_value={secret!r}")

    monkeypatch.setattr(assess.Assessor, "assess", explode)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": []}
    response = client.post(ASSESS, json=bundle)
    assert response.status_code == 500
    assert response.get_json()["resourceType"] == "OperationOutcome"
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "ValueError" in logged
    assert secret not in logged and secret not in response.get_data(as_text=True)
