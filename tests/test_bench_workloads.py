"""The benchmark's inputs are what it says they are, and the service accepts them (so a figure never
measures an error path)."""

from __future__ import annotations

import json
import sys
from collections import Counter

import pytest

from conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "bench"))
import workloads  # noqa: E402


@pytest.mark.parametrize("total", [10, 100, 1000])
def test_a_mixed_bundle_holds_that_many_resources_most_of_them_unrelated(total):
    bundle = json.loads(workloads.mixed_bundle(total))
    kinds = Counter(entry["resource"]["resourceType"] for entry in bundle["entry"])
    labs = sum(1 for entry in bundle["entry"] if entry["resource"].get("category", [{}])[0].get("coding", [{}])[0]
               .get("code") == "laboratory")
    assert sum(kinds.values()) == total and kinds["Patient"] == 1
    assert 2 <= labs <= 20 and labs <= max(2, total // 10)
    assert kinds["Encounter"] and kinds["Claim"]


def test_a_patients_bundle_holds_twenty_labs_for_each_patient():
    bundle = json.loads(workloads.patients_bundle(3))
    kinds = Counter(entry["resource"]["resourceType"] for entry in bundle["entry"])
    assert kinds == {"Patient": 3, "Observation": 60}


def test_the_service_assesses_the_synthetic_bundles(client):
    for body, patients in ((workloads.mixed_bundle(100), 1), (workloads.patients_bundle(2), 2)):
        response = client.post("/fhir/$assess", data=body, content_type="application/fhir+json")
        assert response.status_code == 200
        kinds = Counter(e["resource"]["resourceType"] for e in response.get_json()["entry"])
        assert kinds["RiskAssessment"] == patients


def test_the_small_patient_view_call_is_answered_with_cards(client):
    body = workloads.patient_view_body(workloads.SMALL_PATIENT_VIEW_SOURCE)
    assert 15_000 < len(body) < 20_000  # the ~17 KB call the performance targets name
    response = client.post("/cds-services/calcinosis-patient-view", data=body, content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.get_json()["cards"]


@pytest.mark.skipif(not workloads.synthea_samples(), reason="the Synthea samples are absent")
def test_the_large_patient_view_call_is_one_patients_long_record_of_the_target_size(client):
    body = workloads.large_patient_view_body(workloads.synthea_samples()[-1])
    assert workloads.LARGE_PATIENT_VIEW_BYTES - 20_000 < len(body) <= workloads.LARGE_PATIENT_VIEW_BYTES
    call = json.loads(body)
    patient = call["prefetch"]["patient"]["id"]
    resources = [entry["resource"] for key in ("labs", "conditions", "medications", "procedures")
                 for entry in call["prefetch"][key]["entry"]]
    assert len({(r["resourceType"], r["id"]) for r in resources}) == len(resources)  # every copy has its own id
    owners = {(r.get("subject") or r.get("patient") or {}).get("reference") for r in resources
              if r["resourceType"] != "Medication"}
    assert owners == {f"Patient/{patient}"}
    response = client.post("/cds-services/calcinosis-patient-view", data=body, content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.get_json()["cards"]


def test_an_earlier_copy_moves_every_date_back_and_keeps_codes():
    resource = {"resourceType": "Observation", "id": "o1", "code": {"coding": [{"code": "2160-0"}]},
                "effectiveDateTime": "2024-02-29T10:00:00+01:00", "issued": "2024-03-01T10:00:00.000Z"}
    moved = workloads._earlier_copy(resource, 3, 2)
    assert moved["id"] == "o1-h2" and moved["code"] == resource["code"]
    assert moved["effectiveDateTime"] == "2021-02-28T10:00:00+01:00"
    assert moved["issued"] == "2021-03-01T10:00:00.000Z"
