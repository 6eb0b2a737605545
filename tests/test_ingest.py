"""Bundle ingest: bundle types, references, grouping by patient, validation issues, malformed input."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import InputError
from service.pipeline.ingest import KEPT_TYPES, not_read_stand_in, read_bundle

PATIENT_UUID = "urn:uuid:7c1b1f36-2f7e-4a51-9d0b-6f1a2d3e4c5a"


# --- factories ----------------------------------------------------------------------------------

def patient(resource_id="p1", birth="1970-04-02", **extra):
    resource = {"resourceType": "Patient", "id": resource_id, "gender": "female", "birthDate": birth}
    resource.update(extra)
    return resource


def calcium(subject=PATIENT_UUID, resource_id="ca1", value=9.4, **extra):
    resource = {
        "resourceType": "Observation", "id": resource_id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6",
                             "display": "Calcium [Mass/volume] in Serum or Plasma"}]},
        "effectiveDateTime": "2026-10-02T08:30:00Z",
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
    }
    if subject is not None:
        resource["subject"] = {"reference": subject}
    resource.update(extra)
    return resource


def condition(subject=PATIENT_UUID, resource_id="c1"):
    return {
        "resourceType": "Condition", "id": resource_id,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "89155008",
                             "display": "Systemic sclerosis"}]},
        "subject": {"reference": subject},
    }


def claim(subject=PATIENT_UUID):
    # Deliberately not valid R4 (Claim needs much more): ignored types must not be validated.
    return {"resourceType": "Claim", "id": "cl1", "patient": {"reference": subject}, "total": "lots"}


def entry(resource, full_url=None, request=None):
    item = {"resource": resource}
    if full_url is not None:
        item["fullUrl"] = full_url
    if request is not None:
        item["request"] = request
    return item


def bundle(*entries, bundle_type="collection"):
    return {"resourceType": "Bundle", "type": bundle_type, "entry": list(entries)}


def simple_bundle(bundle_type="collection"):
    return bundle(
        entry(patient(), PATIENT_UUID),
        entry(calcium(), "urn:uuid:0b0e8f7e-0000-4000-8000-000000000001"),
        entry(condition(), "urn:uuid:0b0e8f7e-0000-4000-8000-000000000002"),
        bundle_type=bundle_type,
    )


# --- bundle types and the happy path --------------------------------------------------------------

@pytest.mark.parametrize("bundle_type", ["collection", "batch", "transaction", "searchset", "document"])
def test_every_supported_bundle_type_is_read(bundle_type):
    result = read_bundle(simple_bundle(bundle_type))
    assert result.bundle_type == bundle_type
    assert len(result.patients) == 1
    assert [kept.resource_type for kept in result.patients[0].resources] == ["Observation", "Condition"]
    assert result.issues == ()


def test_kept_resources_carry_location_reference_and_the_json_as_sent():
    data = simple_bundle()
    result = read_bundle(data)
    group = result.patients[0]
    assert group.patient_id == "p1"
    assert group.patient_reference == PATIENT_UUID
    assert group.patient == data["entry"][0]["resource"]
    assert group.patient_location == "Bundle.entry[0].resource"
    observation = group.resources[0]
    assert observation.location == "Bundle.entry[1].resource"
    assert observation.reference == "urn:uuid:0b0e8f7e-0000-4000-8000-000000000001"
    assert observation.resource is data["entry"][1]["resource"]


def test_an_empty_bundle_has_no_patients_and_no_issues():
    result = read_bundle({"resourceType": "Bundle", "type": "collection"})
    assert result.patients == () and result.issues == ()


def test_unrelated_resources_are_ignored_without_validation():
    data = bundle(entry(patient(), PATIENT_UUID), entry(claim()), entry({"resourceType": "Encounter", "bogus": 1}),
                  entry(calcium()))
    result = read_bundle(data)
    assert result.patients[0].issues == ()
    assert [(issue.severity, issue.diagnostics, issue.location) for issue in result.issues] == [
        ("information", "not assessed (not read by the rules): Claim 1, Encounter 1", "Bundle.entry")]
    assert [kept.resource_type for kept in result.patients[0].resources] == ["Observation"]


def test_kept_types_are_the_ones_the_rules_read():
    assert KEPT_TYPES == {"Patient", "Observation", "Condition", "MedicationRequest", "MedicationAdministration",
                          "MedicationStatement", "Procedure", "ServiceRequest", "Medication"}


# --- references -----------------------------------------------------------------------------------

def test_type_and_id_references_resolve_to_the_patient_entry():
    data = bundle(entry(patient("p9")), entry(calcium(subject="Patient/p9")))
    result = read_bundle(data)
    assert len(result.patients) == 1
    group = result.patients[0]
    assert group.patient_reference == "Patient/p9"
    assert group.patient is not None and len(group.resources) == 1


def test_searchset_absolute_full_urls_resolve_relative_references():
    data = bundle(
        entry(calcium(subject="Patient/42", resource_id="o1"), "https://ehr.example.org/fhir/Observation/o1"),
        entry(patient("42"), "https://ehr.example.org/fhir/Patient/42"),
        bundle_type="searchset",
    )
    result = read_bundle(data)
    assert len(result.patients) == 1
    group = result.patients[0]
    assert group.patient is not None and group.patient_reference == "Patient/42"
    assert group.resources[0].reference == "Observation/o1"


def test_an_absolute_reference_resolves_to_a_type_and_id_entry():
    data = bundle(entry(patient("42")), entry(calcium(subject="https://ehr.example.org/fhir/Patient/42/_history/3")))
    result = read_bundle(data)
    assert result.patients[0].patient is not None and len(result.patients[0].resources) == 1


def test_a_patient_only_referenced_forms_its_own_group():
    result = read_bundle(bundle(entry(calcium(subject="Patient/ext-7"))))
    group = result.patients[0]
    assert (group.patient_id, group.patient_reference, group.patient) == ("ext-7", "Patient/ext-7", None)
    assert group.patient_location is None
    assert len(group.resources) == 1


def test_an_unresolvable_urn_subject_is_an_issue_and_the_resource_is_dropped():
    data = bundle(entry(patient(), PATIENT_UUID), entry(calcium(subject="urn:uuid:does-not-exist")),
                  entry(calcium(resource_id="ca2")))
    result = read_bundle(data)
    assert [kept.resource["id"] for kept in result.patients[0].resources] == ["ca2"]
    issue = result.issues[0]
    assert issue.location == "Bundle.entry[1].resource.subject.reference"
    assert "cannot be resolved" in issue.diagnostics


def test_a_subject_that_is_a_group_is_not_assessed():
    data = bundle(entry(patient(), PATIENT_UUID), entry({"resourceType": "Group", "id": "g1", "type": "person",
                                                          "actual": True}),
                  entry(calcium(subject="Group/g1")))
    result = read_bundle(data)
    assert result.patients[0].resources == ()
    assert "not a Patient" in result.issues[0].diagnostics


def test_medication_reference_pulls_the_medication_into_the_patients_resources():
    medication = {"resourceType": "Medication", "id": "m1",
                  "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "855288",
                                       "display": "Warfarin Sodium 1 MG Oral Tablet"}]}}
    request = {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
               "subject": {"reference": PATIENT_UUID}, "medicationReference": {"reference": "Medication/m1"}}
    unused = {"resourceType": "Medication", "id": "m2"}
    result = read_bundle(bundle(entry(patient(), PATIENT_UUID), entry(medication, "urn:uuid:med-1"),
                                entry(request), entry(unused)))
    types = [kept.resource_type for kept in result.patients[0].resources]
    assert types == ["Medication", "MedicationRequest"]


def test_an_unresolvable_medication_reference_is_a_patient_issue():
    request = {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
               "subject": {"reference": PATIENT_UUID}, "medicationReference": {"reference": "Medication/missing"}}
    result = read_bundle(bundle(entry(patient(), PATIENT_UUID), entry(request)))
    group = result.patients[0]
    assert len(group.resources) == 1
    assert group.issues[0].location == "Bundle.entry[1].resource.medicationReference.reference"


# --- grouping -------------------------------------------------------------------------------------

def test_resources_are_grouped_by_patient_in_order_of_first_appearance():
    second = "urn:uuid:22222222-2222-4222-8222-222222222222"
    data = bundle(
        entry(calcium(subject=second, resource_id="b1")),
        entry(patient("p1"), PATIENT_UUID),
        entry(calcium(resource_id="a1")),
        entry(patient("p2"), second),
        entry(condition(subject=second, resource_id="b2")),
    )
    result = read_bundle(data)
    assert [group.patient_id for group in result.patients] == ["p2", "p1"]
    assert [kept.resource["id"] for kept in result.patients[0].resources] == ["b1", "b2"]
    assert [kept.resource["id"] for kept in result.patients[1].resources] == ["a1"]


def test_a_resource_without_subject_belongs_to_the_only_patient():
    result = read_bundle(bundle(entry(patient(), PATIENT_UUID), entry(calcium(subject=None))))
    assert len(result.patients[0].resources) == 1 and result.issues == ()


def test_a_resource_without_subject_is_not_guessed_among_several_patients():
    data = bundle(entry(patient("p1"), PATIENT_UUID), entry(patient("p2"), "urn:uuid:second"),
                  entry(calcium(subject=None)))
    result = read_bundle(data)
    assert all(group.resources == () for group in result.patients)
    assert "cannot be tied to a patient" in result.issues[0].diagnostics
    assert result.issues[0].location == "Bundle.entry[2].resource.subject"


def test_a_duplicate_full_url_keeps_the_first_entry():
    data = bundle(entry(patient(), PATIENT_UUID), entry(calcium(), "urn:uuid:same"),
                  entry(calcium(resource_id="ca2", value=12.0), "urn:uuid:same"))
    result = read_bundle(data)
    assert [kept.resource["id"] for kept in result.patients[0].resources] == ["ca1"]
    assert result.issues[0].location == "Bundle.entry[2].fullUrl"


# --- validation -----------------------------------------------------------------------------------

def test_an_invalid_resource_becomes_an_issue_located_in_the_bundle_and_the_rest_is_assessed():
    bad = calcium(resource_id="bad")
    bad["valueQuantity"]["value"] = "nine point four"
    data = bundle(entry(patient(), PATIENT_UUID), entry(calcium()), entry(bad), entry(condition()))
    result = read_bundle(data)
    group = result.patients[0]
    assert [kept.resource["id"] for kept in group.resources] == ["ca1", "c1"]
    locations = [issue.location for issue in group.issues]
    assert locations == ["Bundle.entry[2].resource.valueQuantity.value"]
    assert group.issues[0].severity == "error"
    assert result.issues == ()


def test_unknown_elements_in_a_kept_resource_are_reported_with_their_path():
    bad = calcium()
    bad["valueQuantity"]["colour"] = "red"
    result = read_bundle(bundle(entry(patient(), PATIENT_UUID), entry(bad)))
    assert result.patients[0].issues[0].location == "Bundle.entry[1].resource.valueQuantity.colour"


def test_an_invalid_patient_still_groups_its_resources_without_the_patient_json():
    data = bundle(entry(patient(birth="the seventies"), PATIENT_UUID), entry(calcium()))
    result = read_bundle(data)
    group = result.patients[0]
    assert group.patient is None and len(group.resources) == 1
    assert group.issues[0].location == "Bundle.entry[0].resource.birthDate"


def test_many_validation_errors_in_one_resource_are_capped():
    # Only the elements the rules read are validated: 40 codes sent as numbers in the result's code.
    bad = calcium()
    bad["code"]["coding"] += [{"system": "http://loinc.org", "code": number} for number in range(40)]
    result = read_bundle(bundle(entry(patient(), PATIENT_UUID), entry(bad)))
    issues = result.patients[0].issues
    assert len(issues) == 21
    assert "20 more validation errors" in issues[-1].diagnostics


def _deep(levels):
    node = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(levels):
        node = {"url": "http://example.org/n", "extension": [node]}
    return node


def test_a_ten_thousand_deep_structure_inside_a_kept_resource_becomes_an_issue():
    deep = calcium(resource_id="deep", extension=[_deep(10_000)])
    result = read_bundle(bundle(entry(patient(), PATIENT_UUID), entry(deep), entry(calcium())))
    group = result.patients[0]
    assert [kept.resource["id"] for kept in group.resources] == ["ca1"]
    assert "nested more than" in group.issues[0].diagnostics
    assert group.issues[0].location == "Bundle.entry[1].resource"


def test_a_deep_structure_in_an_ignored_resource_costs_nothing():
    result = read_bundle(bundle(entry(patient(), PATIENT_UUID), entry({"resourceType": "Basic", "x": _deep(10_000)})))
    assert [issue.diagnostics for issue in result.issues] == ["not assessed (not read by the rules): Basic 1"]
    assert result.patients[0].issues == ()


def test_a_resource_of_a_type_not_read_is_read_the_same_as_its_stand_in():
    """What the reader reads of a type the rules never read is its type and id: the same bundle with each
    such resource replaced by `not_read_stand_in` reads the same (references to it, repeats, counts)."""
    encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": {"reference": PATIENT_UUID}}
    ordered = {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
               "subject": {"reference": PATIENT_UUID}, "medicationReference": {"reference": "urn:uuid:enc-1"}}
    report = {"resourceType": "DiagnosticReport", "id": "dr1", "status": "final", "code": {"text": "panel"},
              "contained": [calcium(subject=None, resource_id="inside")]}
    original = bundle(
        entry(patient(), PATIENT_UUID),
        entry(encounter, "urn:uuid:enc-1"),
        entry(calcium(subject="urn:uuid:enc-1", resource_id="ca-at-encounter")),
        entry(ordered),
        entry(claim(), "urn:uuid:same"),
        entry(condition(resource_id="c-same"), "urn:uuid:same"),  # the fullUrl an unread entry holds
        entry(claim()), entry(claim()),  # the same Claim twice, without fullUrls
        entry({"resourceType": "Claim", "id": "not an id!", "patient": {"reference": PATIENT_UUID}}),
        entry({"resourceType": "Basic", "code": {"text": "no id"}}),
        entry(dict(claim(), id="cl2"), "https://a.example/fhir/Claim/cl2"),
        entry(dict(claim(), id="cl2")),  # named by its id alone
        entry(calcium(subject="Claim/cl2", resource_id="ca-at-claim")),  # two entries it could name
        entry(report),
        entry({"resourceType": "Bundle", "type": "collection"}),
        entry(calcium()),
    )
    stand_ins = copy.deepcopy(original)
    replaced = 0
    for item in stand_ins["entry"]:
        stand_in = not_read_stand_in(item["resource"])
        if stand_in is not None:
            item["resource"] = stand_in
            replaced += 1
    assert replaced == 9  # the Encounter, the Claims, the Basic and the nested Bundle; not the DiagnosticReport
    assert not_read_stand_in(report) is None and all(not_read_stand_in({"resourceType": kind}) is None
                                                     for kind in KEPT_TYPES)
    read, read_from_stand_ins = read_bundle(original), read_bundle(stand_ins)
    assert read_from_stand_ins == read
    diagnostics = " | ".join(issue.diagnostics for group in read.patients for issue in group.issues)
    diagnostics += " | " + " | ".join(issue.diagnostics for issue in read.issues)
    for words in ("refers to a Encounter", "Medication 'urn:uuid:enc-1' is not in the bundle",
                  "is already used by", "is ambiguous", "contained in a DiagnosticReport", "a Bundle nested in an entry",
                  "Claim 6"):
        assert words in diagnostics


# --- bundle-level errors --------------------------------------------------------------------------

@pytest.mark.parametrize("data, location, words", [
    ([{"resourceType": "Bundle"}], "Bundle", "JSON array"),
    ("Bundle", "Bundle", "a string"),
    (None, "Bundle", "null"),
    ({"type": "collection"}, "Bundle.resourceType", "resourceType is missing"),
    (patient(), "Bundle.resourceType", "got a Patient"),
    ({"resourceType": "Bundle"}, "Bundle.type", "Bundle.type is missing"),
    ({"resourceType": "Bundle", "type": "history"}, "Bundle.type", "'history' is not supported"),
    ({"resourceType": "Bundle", "type": "collection", "entry": {"resource": patient()}}, "Bundle.entry",
     "must be an array"),
    ({"resourceType": "Bundle", "type": "collection", "entry": None}, "Bundle.entry", "must be an array"),
])
def test_unusable_payloads_raise_input_error_saying_where(data, location, words):
    with pytest.raises(InputError) as caught:
        read_bundle(data)
    error = caught.value
    assert error.status == 422
    assert error.issues[0].location == location
    assert words in error.issues[0].diagnostics


def test_an_entry_that_is_not_an_object_makes_the_bundle_unusable():
    with pytest.raises(InputError) as caught:
        read_bundle(bundle(entry(patient(), PATIENT_UUID), "not an entry", entry(calcium())))
    assert caught.value.status == 422
    assert [issue.location for issue in caught.value.issues] == ["Bundle.entry[1]"]


def test_a_resource_without_resource_type_makes_the_bundle_unusable_and_every_one_is_named():
    with pytest.raises(InputError) as caught:
        read_bundle(bundle(entry(patient(), PATIENT_UUID), entry({"id": "x", "status": "final"}),
                           entry(calcium()), entry({"id": "y"})))
    assert caught.value.status == 422
    assert [issue.location for issue in caught.value.issues] == [
        "Bundle.entry[1].resource.resourceType", "Bundle.entry[3].resource.resourceType"]
    assert caught.value.issues[0].diagnostics == "Bundle.entry[1].resource: resource has no resourceType"


def test_batch_request_entries_without_resource_are_noted_not_failed():
    data = bundle(entry(patient(), PATIENT_UUID, request={"method": "POST", "url": "Patient"}),
                  {"request": {"method": "DELETE", "url": "Observation/old"}},
                  {"request": {"method": "GET", "url": "Observation?patient=p1"}},
                  bundle_type="batch")
    result = read_bundle(data)
    assert [issue.severity for issue in result.issues] == ["information", "information"]
    assert "DELETE" in result.issues[0].diagnostics


def test_the_input_is_not_modified():
    data = simple_bundle()
    before = copy.deepcopy(data)
    read_bundle(data)
    assert data == before


# --- anything at all ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["resourceType", "id", "subject", "reference", "valueQuantity", "value", "entry",
                         "resource", "fullUrl", "code", "status", "type", "x"]), children, max_size=5),
    max_leaves=20,
)
resource_types = st.sampled_from(["Patient", "Observation", "Condition", "MedicationRequest", "Medication",
                                  "Claim", "Bundle", ""])


@st.composite
def fuzzed_entries(draw):
    resource = draw(st.dictionaries(st.sampled_from(["id", "subject", "status", "code", "valueQuantity",
                                                     "medicationReference", "birthDate"]), json_values, max_size=5))
    resource["resourceType"] = draw(resource_types)
    return draw(st.sampled_from([{"resource": resource}, {"resource": resource, "fullUrl": draw(json_values)},
                                 resource, draw(json_values)]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(fuzzed_entries(), max_size=6), st.sampled_from(["collection", "batch", "history", None]))
def test_arbitrary_entries_never_raise_anything_but_input_error(entries, bundle_type):
    data = {"resourceType": "Bundle", "type": bundle_type, "entry": entries}
    try:
        result = read_bundle(data)
    except InputError as error:
        assert error.issues
        return
    for group in result.patients:
        assert all(kept.resource_type in KEPT_TYPES for kept in group.resources)


@settings(max_examples=40, deadline=None)
@given(json_values)
def test_arbitrary_json_never_raises_anything_but_input_error(data):
    try:
        read_bundle(data)
    except InputError:
        pass


def test_a_flood_of_bad_entries_yields_a_bounded_issue_list():
    with pytest.raises(InputError) as caught:
        read_bundle(bundle(entry(patient(), PATIENT_UUID), *([42] * 600)))
    assert len(caught.value.issues) == 501
    assert caught.value.issues[-1].diagnostics == "100 further issues of the same input are not listed"


def test_a_conditional_reference_is_not_guessed():
    observation = calcium(subject="Patient?identifier=http://hospital.example.org/mrn/Patient/p1")
    result = read_bundle(bundle(entry(patient("p1")), entry(observation)))
    assert result.patients[0].resources == ()
    assert "cannot be resolved" in result.issues[0].diagnostics


# --- resources the rules do not read ----------------------------------------------------------------

def test_resources_not_read_by_the_rules_are_summarised_by_type_with_counts_most_first():
    data = bundle(entry(patient(), PATIENT_UUID), entry(claim()), entry(claim()), entry(claim()),
                  entry({"resourceType": "Encounter", "id": "e1"}), entry({"resourceType": "Immunization"}),
                  entry({"resourceType": "Encounter", "id": "e2"}), entry(calcium()))
    (issue,) = read_bundle(data).issues
    assert issue.severity == "information" and issue.location == "Bundle.entry"
    assert issue.diagnostics == "not assessed (not read by the rules): Claim 3, Encounter 2, Immunization 1"


def test_a_bundle_nested_in_an_entry_is_reported_as_not_assessed():
    inner = bundle(entry(patient(), PATIENT_UUID), entry(calcium()), bundle_type="searchset")
    result = read_bundle(bundle(entry(inner)))
    assert result.patients == ()
    warning = next(issue for issue in result.issues if issue.severity == "warning")
    assert warning.location == "Bundle.entry[0].resource"
    assert "not assessed" in warning.diagnostics and "nested" in warning.diagnostics


def test_observations_contained_in_a_diagnostic_report_are_reported_as_not_assessed():
    report = {"resourceType": "DiagnosticReport", "id": "dr", "status": "final", "code": {"text": "chemistry"},
              "subject": {"reference": PATIENT_UUID}, "contained": [calcium(subject=None, resource_id="c")],
              "result": [{"reference": "#c"}]}
    result = read_bundle(bundle(entry(patient(), PATIENT_UUID), entry(report)))
    warning = next(issue for issue in result.issues if issue.severity == "warning")
    assert warning.location == "Bundle.entry[1].resource.contained"
    assert "1 Observation(s) contained in a DiagnosticReport are not assessed" in warning.diagnostics


def test_a_diagnostic_report_pointing_at_bundle_entries_needs_no_warning():
    report = {"resourceType": "DiagnosticReport", "id": "dr", "status": "final", "code": {"text": "chemistry"},
              "subject": {"reference": PATIENT_UUID}, "result": [{"reference": "Observation/ca1"}]}
    result = read_bundle(bundle(entry(patient(), PATIENT_UUID), entry(report), entry(calcium())))
    assert [issue.severity for issue in result.issues] == ["information"]


# --- fullUrl and id validity --------------------------------------------------------------------------

@pytest.mark.parametrize("full_url", ["urn:uuid:not a uuid", "\x0c", "", "http://x.org/fhir/Patient/a b",
                                      "urn:uuid:\x01"])
def test_a_full_url_that_is_not_a_valid_uri_is_ignored_with_a_warning(full_url):
    result = read_bundle(bundle(entry(patient(), full_url), entry(calcium(subject="Patient/p1"))))
    (issue,) = result.issues
    assert (issue.severity, issue.location) == ("warning", "Bundle.entry[0].fullUrl")
    assert "ignored" in issue.diagnostics
    group = result.patients[0]
    assert group.patient_reference == "Patient/p1" and len(group.resources) == 1


def test_a_patient_id_that_is_not_a_valid_fhir_id_falls_back_to_the_full_url():
    result = read_bundle(bundle(entry(patient(resource_id="x" * 65), PATIENT_UUID), entry(calcium())))
    (group,) = result.patients
    assert group.patient_reference == PATIENT_UUID
    assert group.patient_id == PATIENT_UUID[len("urn:uuid:"):]
    assert [issue.location for issue in group.issues] == ["Bundle.entry[0].resource.id"]
    assert "not a valid FHIR id" in group.issues[0].diagnostics


def test_a_patient_with_an_invalid_id_and_no_usable_full_url_gets_a_surrogate_id():
    result = read_bundle(bundle(entry(patient(resource_id="a b"), "bad url"), entry(calcium(subject=None))))
    (group,) = result.patients
    assert group.patient_id == "entry-0"
    assert "Bundle.entry[0].resource.id" in [issue.location for issue in group.issues]


@pytest.mark.parametrize("full_url", ["urn:uuid:not a uuid", "\x0c", "", "urn:uuid:", "http://x/Patient/a b",
                                      "urn:uuid:" + "a" * 5000, "Patient/ok", "urn:uuid:\x7f"])
@pytest.mark.parametrize("resource_id", ["p1", "a b", "\x0c", None, "y" * 70])
def test_references_handed_on_are_always_valid_r4_reference_strings(full_url, resource_id):
    from fhir.resources.R4B.reference import Reference

    resource = patient()
    if resource_id is None:
        del resource["id"]
    else:
        resource["id"] = resource_id
    result = read_bundle(bundle(entry(resource, full_url), entry(calcium(subject=full_url), "urn:uuid:c"),
                                entry(calcium(subject=None, resource_id="o2"))))
    references = [group.patient_reference for group in result.patients]
    references += [kept.reference for group in result.patients for kept in group.resources if kept.reference]
    assert references
    for reference in references:
        Reference.model_validate({"reference": reference})
        assert reference.isprintable()


# --- identity of entries (bdl-7) ---------------------------------------------------------------------

def test_same_type_and_id_under_different_absolute_full_urls_are_different_resources():
    data = bundle(
        entry(patient("1"), "http://a.org/fhir/Patient/1"),
        entry(patient("1", birth="2015-01-01"), "http://b.org/fhir/Patient/1"),
        entry(calcium(subject="http://a.org/fhir/Patient/1", resource_id="1", value=9.5),
              "http://a.org/fhir/Observation/1"),
        entry(calcium(subject="http://b.org/fhir/Patient/1", resource_id="1", value=12.5),
              "http://b.org/fhir/Observation/1"))
    result = read_bundle(data)
    assert result.issues == ()
    assert [(group.patient_reference, [kept.reference for kept in group.resources],
             [kept.resource["valueQuantity"]["value"] for kept in group.resources]) for group in result.patients] == [
        ("http://a.org/fhir/Patient/1", ["http://a.org/fhir/Observation/1"], [9.5]),
        ("http://b.org/fhir/Patient/1", ["http://b.org/fhir/Observation/1"], [12.5])]


def test_a_relative_reference_is_read_against_the_referring_entrys_server():
    data = bundle(
        entry(patient("1"), "http://a.org/fhir/Patient/1"),
        entry(patient("1", birth="2015-01-01"), "http://b.org/fhir/Patient/1"),
        entry(calcium(subject="Patient/1", resource_id="o"), "http://b.org/fhir/Observation/o"))
    result = read_bundle(data)
    by_patient = {group.patient_reference: len(group.resources) for group in result.patients}
    assert by_patient == {"http://a.org/fhir/Patient/1": 0, "http://b.org/fhir/Patient/1": 1}


def test_a_type_and_id_reference_shared_by_two_different_entries_is_ambiguous_and_not_resolved():
    data = bundle(
        entry(patient("1"), "urn:uuid:0b0e8f7e-0000-4000-8000-00000000000a"),
        entry(patient("1", birth="2015-01-01"), "urn:uuid:0b0e8f7e-0000-4000-8000-00000000000b"),
        entry(calcium(subject="Patient/1")))
    result = read_bundle(data)
    assert all(group.resources == () for group in result.patients)
    (issue,) = result.issues
    assert (issue.severity, issue.code, issue.location) == (
        "warning", "multiple-matches", "Bundle.entry[2].resource.subject.reference")
    assert "Bundle.entry[0] and Bundle.entry[1]" in issue.diagnostics


def test_an_ambiguous_medication_reference_is_not_resolved():
    medication = {"resourceType": "Medication", "id": "m", "code": {"text": "calcium gluconate"}}
    order = {"resourceType": "MedicationRequest", "id": "mr", "status": "active", "intent": "order",
             "subject": {"reference": PATIENT_UUID}, "medicationReference": {"reference": "Medication/m"}}
    data = bundle(entry(patient(), PATIENT_UUID),
                  entry(medication, "urn:uuid:0b0e8f7e-0000-4000-8000-00000000000a"),
                  entry(dict(medication, code={"text": "sodium chloride"}), "urn:uuid:0b0e8f7e-0000-4000-8000-00000000000b"),
                  entry(order))
    group = read_bundle(data).patients[0]
    assert [kept.resource_type for kept in group.resources] == ["MedicationRequest"]
    assert [issue.code for issue in group.issues] == ["multiple-matches"]


def test_entries_without_full_url_and_the_same_type_and_id_are_one_resource_sent_twice():
    data = bundle(entry(patient(), PATIENT_UUID), entry(calcium()), entry(calcium(value=12.0)))
    result = read_bundle(data)
    assert [kept.resource["valueQuantity"]["value"] for kept in result.patients[0].resources] == [9.4]
    assert [(issue.code, issue.location) for issue in result.issues] == [("duplicate", "Bundle.entry[2].resource.id")]
