"""Whose data a call carries, and what the clinician is told about input that was skipped or doubtful.

Runs through the real assessment core, so the data notes are the core's own issues, with their
locations translated back into the caller's request.
"""

from __future__ import annotations

import copy

import pytest

from service.hooks.data_notes import DataNote, caller_location, located_notes
from service.assessment_model import EntryPlace, InputIssue
from tests.support.cds_fixtures import core_at_fixture_time, fixture_app, request_for

PATIENT_ID = "esrd-7301"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with core_at_fixture_time():
        yield fixture_app(tmp_path_factory.mktemp("cds-patient")).test_client()


def _post(client, body, hook="patient-view"):
    return client.post(f"/cds-services/calcinosis-{hook}", json=body)


def _card(client, body, hook="patient-view") -> dict:
    response = _post(client, body, hook)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"][-1]


def _located(card: dict) -> list[dict]:
    """The data notes with their locations in the caller's request (the card's extension)."""
    return card["extension"]["calcinosis-cds.org/data-notes"]


def test_a_lab_entered_in_error_is_named_in_the_data_notes_at_its_place_in_the_prefetch(client):
    body = request_for("patient-view")
    body["prefetch"]["labs"]["entry"][1]["resource"]["status"] = "entered-in-error"
    card = _card(client, body)
    (note,) = [n for n in _located(card) if "status 'entered-in-error'" in n["text"]]
    assert note == {"severity": "warning", "location": "prefetch.labs.entry[1].resource.status",
                    "text": "Phosphate (serum) (LOINC 2777-1) not used: status 'entered-in-error'"}
    assert "Bundle.entry[" not in str(card) and "prefetch." not in card["detail"]


def test_an_unreadable_draft_order_is_located_in_context_draft_orders(client):
    body = request_for("order-sign")
    draft = copy.deepcopy(body["context"]["draftOrders"]["entry"][0])
    draft["resource"]["id"] = "draft-extra"
    draft["resource"]["authoredOn"] = "not a date"
    body["context"]["draftOrders"]["entry"].append(draft)
    index = len(body["context"]["draftOrders"]["entry"]) - 1
    response = _post(client, body, "order-sign")
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    locations = [n.get("location") for card in cards for n in card.get("extension", {}).get(
        "calcinosis-cds.org/data-notes", [])]
    assert f"context.draftOrders.entry[{index}].resource.authoredOn" in locations
    assert "Bundle.entry[" not in str(cards)
    assert not any("context.draftOrders" in card["detail"] for card in cards)


def test_a_prefetched_patient_without_id_is_the_context_patient(client):
    body = request_for("patient-view")
    del body["prefetch"]["patient"]["id"]
    for entry in body["prefetch"]["labs"]["entry"]:
        entry["resource"].pop("referenceRange", None)  # so the patient's age decides the ranges
    response = _post(client, body)
    assert response.status_code == 200
    (card,) = response.get_json()["cards"]
    assert card["summary"] == "Metastatic calcinosis likely: Ca x P 81.8 mg2/dL2"
    assert "age unknown" not in str(card).lower()
    assert "demographics not provided" not in str(card)


def test_without_a_patient_the_data_notes_say_adult_default_ranges_were_applied(client):
    body = request_for("patient-view")
    body["prefetch"]["patient"] = None
    for entry in body["prefetch"]["labs"]["entry"]:
        entry["resource"].pop("referenceRange", None)
    card = _card(client, body)
    assert ("patient demographics not provided: the age is unknown, so calcium and phosphate are flagged only "
            "outside every age band of their default ranges") in [n["text"] for n in _located(card)]
    assert "- Age unknown (no patient record): only values outside every age band are flagged" in card["detail"]


def test_labs_without_subject_and_no_patient_still_belong_to_the_context_patient(client):
    body = request_for("patient-view")
    body["prefetch"]["patient"] = None
    for key in ("labs", "conditions"):
        for entry in (body["prefetch"].get(key) or {}).get("entry", []):
            entry["resource"].pop("subject", None)
    response = _post(client, body)
    assert response.status_code == 200
    summaries = [card["summary"] for card in response.get_json()["cards"]]
    assert "Metastatic calcinosis likely: Ca x P 81.8 mg2/dL2" in summaries


@pytest.mark.parametrize("subject", [{"reference": "Patient/other-1"}, {"reference": "Group/1"},
                                     {"reference": "https://ehr.example.org/fhir/Patient/other-1"},
                                     {"reference": "urn:uuid:7e0a1b36-6c6f-4c1c-9b0f-1f2b2f1c8a11"},
                                     {"identifier": {"system": "urn:example:mrn", "value": "1"}}])
def test_a_prefetched_lab_of_another_patient_is_refused_with_400_at_its_subject(client, subject):
    body = request_for("patient-view")
    body["prefetch"]["labs"]["entry"][1]["resource"]["subject"] = subject
    response = _post(client, body)
    assert response.status_code == 400
    (issue,) = response.get_json()["issue"]
    assert issue["expression"] == ["prefetch.labs.entry[1].resource.subject"]


def test_a_lab_naming_the_context_patient_by_absolute_url_is_accepted(client):
    body = request_for("patient-view")
    body["prefetch"]["labs"]["entry"][0]["resource"]["subject"] = {
        "reference": f"https://ehr.example.org/fhir/Patient/{PATIENT_ID}"}
    assert _post(client, body).status_code == 200


def test_a_lab_naming_the_context_patient_by_the_urn_of_its_id_is_accepted(client):
    body = request_for("patient-view")
    patient_uuid = "5fd069dc-e337-4062-9722-a732c655c17d"
    body["context"]["patientId"] = patient_uuid
    body["prefetch"]["patient"]["id"] = patient_uuid
    for entry in body["prefetch"]["labs"]["entry"]:
        entry["resource"]["subject"] = {"reference": f"urn:uuid:{patient_uuid}"}
    for entry in body["prefetch"]["conditions"]["entry"]:
        entry["resource"]["subject"] = {"reference": f"Patient/{patient_uuid}"}
    response = _post(client, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["cards"][0]["summary"] == "Metastatic calcinosis likely: Ca x P 81.8 mg2/dL2"


def test_issue_locations_are_translated_entry_by_entry():
    locations = (("context.draftOrders.entry[0]", "context.draftOrders.entry[0].resource"),
                 ("prefetch.patient", "prefetch.patient"),
                 ("prefetch.labs.entry[2]", "prefetch.labs.entry[2].resource"))

    def at(index, path):
        return InputIssue.at_entry(index, path, "warning", "value", "doubtful")

    assert caller_location(at(2, "resource.valueQuantity.code"), locations) == \
        "prefetch.labs.entry[2].resource.valueQuantity.code"
    assert caller_location(at(1, "resource.birthDate"), locations) == "prefetch.patient.birthDate"
    assert caller_location(at(0, "fullUrl"), locations) == "context.draftOrders.entry[0].fullUrl"
    assert caller_location(at(10, "resource"), locations) == "Bundle.entry[10].resource"
    assert caller_location(InputIssue("warning", "value", "doubtful", None), locations) is None


def test_located_notes_stop_at_a_hundred_and_say_how_many_more():
    issues = tuple(InputIssue.at_entry(n, "resource.value", "warning", "value", f"value {n} not used")
                   for n in range(105))
    notes = located_notes((DataNote("warning", "a gathering note", "prefetch.labs.link"),), (), issues, (),
                          patient_provided=True)
    assert len(notes) == 101
    assert notes[0] == DataNote("warning", "a gathering note", "prefetch.labs.link")
    assert notes[1] == DataNote("warning", "value 0 not used", None)  # a location the caller cannot map is left out
    assert notes[-1] == DataNote("information", "6 more data notes not listed")


def test_located_notes_translate_the_locations_inside_their_text_too():
    issue = InputIssue.at_entry(2, "resource", "warning", "conflict",
                                "calcium: conflicting results at the same time: the higher one is used; ",
                                EntryPlace(2, "resource"), " (9.6 mg/dL) and ", EntryPlace(1, "resource"), " (9.2 mg/dL)")
    assert issue.diagnostics == ("calcium: conflicting results at the same time: the higher one is used; "
                                 "Bundle.entry[2].resource (9.6 mg/dL) and Bundle.entry[1].resource (9.2 mg/dL)")
    locations = (("prefetch.patient", "prefetch.patient"), ("prefetch.labs.entry[0]", "prefetch.labs.entry[0].resource"),
                 ("prefetch.labs.entry[1]", "prefetch.labs.entry[1].resource"))
    (note,) = located_notes((), (), (issue,), locations, patient_provided=True)
    assert note.text == ("calcium: conflicting results at the same time: the higher one is used; "
                         "prefetch.labs.entry[1].resource (9.6 mg/dL) and prefetch.labs.entry[0].resource (9.2 mg/dL)")
    assert note.location == "prefetch.labs.entry[1].resource"


# -- the few data notes a clinician reads ---------------------------------------------------------------

def _lab(entry_id: str, code: str) -> dict:
    return {"resource": {"resourceType": "Observation", "id": entry_id, "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": code}]}}}


def _clinician_lines(assessment, issues, bundle_entries, **options) -> tuple[str, ...]:
    from service.hooks.data_notes import clinician_lines

    return clinician_lines(assessment, options.pop("notes", ()), issues,
                           bundle={"resourceType": "Bundle", "type": "collection", "entry": bundle_entries}, **options)


def test_results_that_could_not_be_read_are_counted_by_reason_only_when_they_changed_the_result():
    from tests.support.cds_app import metastatic_assessment

    entries = [_lab("ca-bad-1", "17861-6"), _lab("ca-bad-2", "17861-6"), _lab("pth-old", "2731-8"), _lab("ca-1", "17861-6")]
    unit = [InputIssue.at_entry(i, "resource.valueQuantity.code", "warning", "code-invalid",
                                "Calcium (serum) (LOINC 17861-6) not used: unit 'mg/furlong'") for i in (0, 1)]
    old_pth = InputIssue.at_entry(2, "resource.valueQuantity", "warning", "code-invalid", "PTH not used: unit 'x'")
    conflict = InputIssue.at_entry(3, "resource", "warning", "conflict", "calcium: conflicting results at the same time")
    info = InputIssue.at_entry(3, "resource.status", "information", "informational", "Calcium: preliminary result used")
    calcium_unread = metastatic_assessment(incomplete_analytes=("calcium",))
    lines = _clinician_lines(calcium_unread, (*unit, old_pth, conflict, info), entries)
    # The PTH was not counted by the rules (too old, say): its note stays in the extension only.
    assert lines == ("2 results could not be read: unknown unit",
                     "1 result used with a caveat: another result at the same time disagrees")
    assert _clinician_lines(metastatic_assessment(), unit, entries) == ()  # nothing was left unsettled by them


def test_partial_searches_come_first_then_the_unknown_age_and_at_most_three_lines_are_kept():
    from service.assessment_model import DataGap
    from service.hooks.data_notes import DataNote
    from tests.support.cds_app import metastatic_assessment

    assessment = metastatic_assessment(incomplete_searches=("condition",))
    age = InputIssue("warning", "value", "age unknown: adult ranges", None)
    ehr = DataNote("warning", "prefetch 'labs': the EHR noted: results from the reference lab could not be retrieved",
                   "prefetch.labs", "ehr")
    lines = _clinician_lines(assessment, (age,), [], notes=(ehr,), patient_provided=False,
                             data_gaps=(DataGap("Observation", location="prefetch.labs"),))
    assert lines == ("Lab results were read only in part: any result may be missing",
                     "Conditions were read only in part: a diagnosis may be missing",
                     "Age unknown (no patient record): only values outside every age band are flagged")
    assert _clinician_lines(metastatic_assessment(), (), [], notes=(ehr,)) == (
        "The EHR noted: results from the reference lab could not be retrieved",)
