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
