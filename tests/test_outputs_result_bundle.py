"""The result Bundle of $assess: a validated collection, per patient in a fixed order."""

from __future__ import annotations

import json

from service.fhir_outputs import build_result_bundle
from test_outputs_scenarios import ALL_SCENARIOS, BUNDLE_ISSUES, dystrophic_with_condition, no_labs, validate_r4


def walk(value, path="$"):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")
    yield path, value


def test_several_patients_give_a_collection_with_each_patients_resources_together():
    bundle = build_result_bundle([no_labs(), dystrophic_with_condition()], [])
    validate_r4(bundle)
    assert bundle["type"] == "collection"
    kinds = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    assert kinds == ["RiskAssessment", "CarePlan"] + ["ServiceRequest"] * 4 + \
                    ["RiskAssessment", "CarePlan"] + ["ServiceRequest"] * 3
    subjects = [entry["resource"]["subject"]["reference"] for entry in bundle["entry"]]
    assert subjects[:6] == ["urn:uuid:f0a1c3d2-0000-4000-8000-000000000001"] * 6
    assert subjects[6:] == ["Patient/dm-7"] * 5


def test_bundle_timestamp_is_the_evaluation_time():
    assert build_result_bundle([no_labs()], [])["timestamp"] == "2026-11-02T09:30:00Z"


def test_no_patient_and_no_issue_gives_an_empty_but_valid_collection():
    bundle = build_result_bundle([], [])
    validate_r4(bundle)
    assert bundle["type"] == "collection" and "entry" not in bundle


def test_output_is_plain_json_without_nulls_or_empty_elements():
    bundle = build_result_bundle([scenario() for scenario in ALL_SCENARIOS], BUNDLE_ISSUES)
    assert json.loads(json.dumps(bundle)) == bundle
    empties = [path for path, value in walk(bundle) if value is None or value in ("", [], {})]
    assert empties == []


def test_every_resource_of_a_mixed_bundle_validates_on_its_own():
    bundle = build_result_bundle([scenario() for scenario in ALL_SCENARIOS], BUNDLE_ISSUES)
    for entry in bundle["entry"]:
        validate_r4(entry["resource"])
    assert len(bundle["entry"]) == len({entry["fullUrl"] for entry in bundle["entry"]})
