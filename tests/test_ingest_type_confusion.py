"""A value of the wrong JSON kind anywhere the service reads is an issue with its location, never a 5xx.

`resourceType` as an array, an object or a number at entry level makes the Bundle unusable (422, the
entry's location); inside a kept resource's `contained`, the resource is skipped with the location
of the bad element and counted as data not read. Every element the rules read, at any depth, is
replaced here by values of every other JSON kind: the core answers with issues, never an exception.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import InputError
from service.pipeline.assess import assess_bundle

NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)
NOT_A_NAME = [["Observation"], {"name": "Observation"}, 7, 7.5, True]


def _patient():
    return {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}


def _calcium():
    return {
        "resourceType": "Observation", "id": "ca", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6", "display": "Calcium"}], "text": "Calcium"},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-01T08:00:00Z",
        "issued": "2026-11-01T10:00:00Z",
        "valueQuantity": {"value": 10.9, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                        "code": "H"}]}],
        "referenceRange": [{"low": {"value": 8.5, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                    "code": "mg/dL"},
                            "high": {"value": 10.2, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                     "code": "mg/dL"},
                            "appliesTo": [{"text": "adult"}], "age": {"low": {"value": 18, "unit": "a"}}}],
    }


def _order():
    return {
        "resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
        "subject": {"reference": "Patient/p1"}, "authoredOn": "2026-10-01",
        "medicationReference": {"reference": "#med"},
        "contained": [{"resourceType": "Medication", "id": "med",
                       "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1"}],
                                "text": "calcium gluconate"}}],
        "dosageInstruction": [{"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]}}],
    }


def _condition():
    return {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "46177005"}], "text": "ESRD"},
            "onsetPeriod": {"start": "2020-01-01"}, "recordedDate": "2020-02-01"}


def _bundle(*resources):
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def _all_issues(run):
    return [*run.issues, *(issue for patient in run.patients for issue in patient.issues)]


@pytest.mark.parametrize("kind", NOT_A_NAME, ids=lambda value: type(value).__name__)
def test_an_entry_whose_resource_type_is_not_a_string_makes_the_bundle_unusable_with_its_location(kind):
    with pytest.raises(InputError) as raised:
        assess_bundle(_bundle(_patient(), {"resourceType": kind, "id": "x"}), now=NOW)
    assert raised.value.status == 422
    assert [issue.location for issue in raised.value.issues] == ["Bundle.entry[1].resource.resourceType"]
    assert raised.value.issues[0].entry_index == 1


@pytest.mark.parametrize("kind", NOT_A_NAME, ids=lambda value: type(value).__name__)
def test_a_contained_resource_whose_resource_type_is_not_a_string_is_located_and_its_resource_not_read(kind):
    order = _order()
    order["contained"][0]["resourceType"] = kind
    run = assess_bundle(_bundle(_patient(), order), now=NOW)
    (issue,) = [issue for issue in _all_issues(run) if issue.severity == "error"]
    assert issue.location == "Bundle.entry[1].resource.contained[0].resourceType"
    assert (issue.entry_index, issue.path) == (1, "resource.contained[0].resourceType")
    assert "not a valid R4 MedicationRequest" in issue.diagnostics


def _paths(value, path=()):
    """Every element path (keys and list positions) of a JSON value."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            if key != "resourceType":
                yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for position, child in enumerate(value):
            yield from _paths(child, (*path, position))


def _replaced(resource, path, value):
    changed = copy.deepcopy(resource)
    target = changed
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return changed


_RESOURCES = [_calcium(), _order(), _condition()]
_TARGETS = [(index, path) for index, resource in enumerate(_RESOURCES) for path in _paths(resource) if path]
_OTHER_KINDS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=5), st.just([]), st.just({}), st.just([{"a": [1]}]),
                         st.just({"coding": "x"}), st.just([[]]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_TARGETS), _OTHER_KINDS)
def test_any_element_read_replaced_by_any_json_kind_gives_issues_never_an_exception(target, value):
    index, path = target
    resources = [copy.deepcopy(resource) for resource in _RESOURCES]
    resources[index] = _replaced(resources[index], path, value)
    run = assess_bundle(_bundle(_patient(), *resources), now=NOW)  # any exception fails the test
    for issue in _all_issues(run):
        if issue.severity == "error" and issue.code == "invalid":
            assert issue.entry_index == index + 1 and issue.location.startswith(f"Bundle.entry[{index + 1}].resource")


@pytest.mark.parametrize("kind", NOT_A_NAME[:3], ids=lambda value: type(value).__name__)
def test_assess_over_http_answers_a_non_string_resource_type_with_a_located_422(client, kind):
    import orjson

    body = orjson.dumps(_bundle(_patient(), {"resourceType": kind}))
    response = client.post("/fhir/$assess", data=body, content_type="application/fhir+json")
    assert response.status_code == 422
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [issue["expression"] for issue in outcome["issue"]] == [["Bundle.entry[1].resource.resourceType"]]


def test_the_level_by_level_scan_agrees_with_the_path_following_one():
    """`scan_resource` tells depth alone level by level and follows paths only for a resource with a
    long text: both ways give the same answer, at and around the depth limit, with and without long texts."""
    from service.fhir_reading.elements import MAX_TEXT_LENGTH, _scan_with_paths, scan_resource

    long_text = "x" * (MAX_TEXT_LENGTH + 1)
    shapes = []
    for depth in (0, 1, 2, 3, 4, 5, 6):
        for leaf in ("short", long_text, 7, None):
            value: object = {"text": leaf, "note": [{"text": long_text}]}
            for level in range(depth):
                value = {"code": {"coding": [value]}} if level % 2 else {"extension": [value], "display": leaf}
            shapes.append(value)
    for shape in shapes:
        for limit in (1, 2, 3, 4, 6, 64):
            assert scan_resource(shape, limit) == _scan_with_paths(shape, limit)
