"""Prefetch, null versus missing, and the fhirServer fallback (CDS Hooks 2.0 Prefetch, FHIR Resource Access)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import responses
from responses import matchers

from service.hooks import hook_call
from service.hooks.fhir_fetch import FetchError, FhirFetcher
from tests.support.cds_app import FakeCore, make_app, metastatic_assessment

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "cds-hooks"
EHR = "https://ehr.example.org/fhir"
PATIENT_ID = "esrd-7301"
TOKEN = "some-opaque-fhir-access-token"


@pytest.fixture
def core(monkeypatch) -> FakeCore:
    fake = FakeCore(metastatic_assessment(PATIENT_ID))
    monkeypatch.setattr(hook_call, "core_assess", fake)
    return fake


@pytest.fixture
def client(tmp_path, core):
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
                    "CDS_FHIR_SERVER_ALLOWLIST": [EHR], "CDS_FHIR_MAX_PAGES": 2})
    return app.test_client()


def _request() -> dict:
    return json.loads((FIXTURES / "patient-view-request.json").read_text())


def _post(client, body):
    return client.post("/cds-services/calcinosis-patient-view", json=body)


def _types(bundle: dict) -> list[str]:
    return sorted(e["resource"]["resourceType"] for e in bundle["entry"])


def _searchset(resources, next_url=None) -> dict:
    bundle = {"resourceType": "Bundle", "type": "searchset",
              "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def _observation(oid: str) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "valueQuantity": {"value": 9.1, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}


@responses.activate
def test_complete_prefetch_is_used_without_contacting_the_fhir_server(client, core):
    response = _post(client, _request())
    assert response.status_code == 200
    assert len(responses.calls) == 0
    assert _types(core.bundles[0]) == ["Condition", "Observation", "Observation", "Observation", "Patient"]
    assert core.bundles[0]["type"] == "collection"


@responses.activate
def test_a_null_prefetch_key_means_no_data_and_is_not_fetched(client, core):
    body = _request()
    body["prefetch"]["labs"] = None
    assert _post(client, body).status_code == 200
    assert len(responses.calls) == 0
    assert _types(core.bundles[0]) == ["Condition", "Patient"]


@responses.activate
def test_a_missing_prefetch_key_is_fetched_with_the_bearer_token(client, core):
    body = _request()
    del body["prefetch"]["labs"]
    responses.get(f"{EHR}/Observation", json=_searchset([_observation("fetched-1")]),
                  match=[matchers.header_matcher({"Authorization": f"Bearer {TOKEN}"})])
    assert _post(client, body).status_code == 200
    assert len(responses.calls) == 1
    assert "code=http" in responses.calls[0].request.url and f"patient={PATIENT_ID}" in responses.calls[0].request.url
    ids = [e["resource"]["id"] for e in core.bundles[0]["entry"]]
    assert "fetched-1" in ids and "ca-7301" not in ids


@responses.activate
def test_an_operation_outcome_in_prefetch_counts_as_missing(client, core):
    body = _request()
    body["prefetch"]["conditions"] = {"resourceType": "OperationOutcome",
                                      "issue": [{"severity": "error", "code": "timeout"}]}
    responses.get(f"{EHR}/Condition", json=_searchset([]))
    assert _post(client, body).status_code == 200
    assert [c.request.url.split("?")[0] for c in responses.calls] == [f"{EHR}/Condition"]


@responses.activate
def test_searchset_pages_are_followed_up_to_the_cap_and_the_cap_is_reported(client, core):
    body = _request()
    del body["prefetch"]["labs"]
    responses.get(f"{EHR}/Observation", json=_searchset([_observation("o1")], f"{EHR}?_getpages=x&page=2"))
    responses.get(f"{EHR}", json=_searchset([_observation("o2")], f"{EHR}?_getpages=x&page=3"),
                  match=[matchers.query_param_matcher({"_getpages": "x", "page": "2"})])
    response = _post(client, body)
    assert response.status_code == 200
    assert len(responses.calls) == 2  # the third page is beyond CDS_FHIR_MAX_PAGES=2
    ids = [e["resource"]["id"] for e in core.bundles[0]["entry"]]
    assert "o1" in ids and "o2" in ids
    card = response.get_json()["cards"][-1]
    (note,) = [n for n in _located_notes(response) if "only the first 2 pages of Observation were read" in n["text"]]
    # The labs were not prefetched: the note names the search the service ran, not a key the EHR never sent.
    assert note["location"].startswith(f"Observation?patient={PATIENT_ID}&code=")
    assert "Lab results were read only in part" in card["detail"]


def _fallback_412(client, body) -> dict:
    response = _post(client, body)
    assert response.status_code == 412
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome


@responses.activate
def test_a_fhir_server_timeout_gives_412(client):
    body = _request()
    del body["prefetch"]["labs"]
    responses.get(f"{EHR}/Observation", body=requests.exceptions.ReadTimeout("slow"))
    outcome = _fallback_412(client, body)
    assert outcome["issue"][0]["expression"] == ["prefetch.labs"]
    assert "did not answer" in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize("status, words", [(401, "refused access"), (500, "HTTP 500")])
@responses.activate
def test_fhir_server_errors_give_412_naming_the_key(client, status, words):
    body = _request()
    del body["prefetch"]["patient"]
    responses.get(f"{EHR}/Patient/{PATIENT_ID}", status=status, json={"resourceType": "OperationOutcome"})
    outcome = _fallback_412(client, body)
    assert outcome["issue"][0]["expression"] == ["prefetch.patient"]
    assert words in outcome["issue"][0]["diagnostics"]
    assert TOKEN not in json.dumps(outcome)


@responses.activate
def test_a_fhir_server_not_on_the_allowlist_is_never_contacted(client):
    body = _request()
    body["fhirServer"] = "https://elsewhere.example.net/fhir"
    del body["prefetch"]["labs"]
    outcome = _fallback_412(client, body)
    assert len(responses.calls) == 0
    assert "allowlist" in outcome["issue"][0]["diagnostics"]


def test_missing_prefetch_without_fhir_server_gives_412(client):
    body = _request()
    del body["fhirServer"], body["fhirAuthorization"], body["prefetch"]["conditions"]
    outcome = _fallback_412(client, body)
    assert outcome["issue"][0]["expression"] == ["prefetch.conditions"]


def test_no_prefetch_and_no_fhir_server_gives_412_for_every_key(client):
    body = _request()
    del body["fhirServer"], body["fhirAuthorization"], body["prefetch"]
    outcome = _fallback_412(client, body)
    assert {i["expression"][0] for i in outcome["issue"]} == {
        "prefetch.patient", "prefetch.labs", "prefetch.conditions", "prefetch.medications", "prefetch.procedures"}


@responses.activate
def test_a_next_link_to_another_server_is_not_followed_with_the_token():
    fetcher = FhirFetcher(allowlist=[EHR], connect_timeout=1, read_timeout=1, max_pages=5)
    responses.get(f"{EHR}/Observation", json=_searchset([_observation("o1")], "https://evil.example.net/page2"))
    with pytest.raises(FetchError, match="another server"):
        fetcher.fetch(EHR, "Observation?patient=1", TOKEN)
    assert len(responses.calls) == 1


def test_the_allowlist_matches_whole_path_segments():
    fetcher = FhirFetcher(allowlist=[EHR], connect_timeout=1, read_timeout=1, max_pages=5)
    fetcher.check_server(f"{EHR}/")
    fetcher.check_server("HTTPS://EHR.example.org/fhir")
    with pytest.raises(FetchError):
        fetcher.check_server("https://ehr.example.org/fhir-evil")
    with pytest.raises(FetchError):
        fetcher.check_server("https://ehr.example.org.evil.net/fhir")


def test_a_prefetched_patient_with_another_id_is_refused(client):
    body = _request()
    body["prefetch"]["patient"] = dict(body["prefetch"]["patient"], id="someone-else")
    response = _post(client, body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["prefetch.patient.id"]


def test_draft_orders_reach_the_core_in_the_same_bundle(client, core):
    body = json.loads((FIXTURES / "order-sign-request.json").read_text())
    response = client.post("/cds-services/calcinosis-order-sign", json=body)
    assert response.status_code == 200
    drafts = [e["resource"] for e in core.bundles[0]["entry"] if e["resource"].get("status") == "draft"]
    assert {r["id"] for r in drafts} == {"draft-k-phos", "draft-pth"}


def test_nothing_to_say_is_an_empty_cards_array(tmp_path, monkeypatch):
    from tests.support.cds_app import quiet_assessment

    monkeypatch.setattr(hook_call, "core_assess", FakeCore(quiet_assessment(PATIENT_ID)))
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")})
    response = _post(app.test_client(), _request())
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_an_assessment_of_another_patient_is_never_shown(tmp_path, monkeypatch):
    monkeypatch.setattr(hook_call, "core_assess", FakeCore(metastatic_assessment("someone-else")))
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")})
    response = _post(app.test_client(), _request())
    assert response.get_json() == {"cards": []}


# -- draft orders belong to the patient in context --------------------------------------------------------

def _order_sign_request() -> dict:
    return json.loads((FIXTURES / "order-sign-request.json").read_text())


def test_draft_orders_without_subject_reach_the_core_as_the_context_patients(client, core):
    body = _order_sign_request()
    for entry in body["context"]["draftOrders"]["entry"]:
        entry["resource"].pop("subject")
    assert client.post("/cds-services/calcinosis-order-sign", json=body).status_code == 200
    drafts = [e["resource"] for e in core.bundles[0]["entry"] if e["resource"].get("status") == "draft"]
    assert {r["id"]: r["subject"] for r in drafts} == {
        "draft-k-phos": {"reference": f"Patient/{PATIENT_ID}"}, "draft-pth": {"reference": f"Patient/{PATIENT_ID}"}}


def test_a_draft_order_known_only_by_its_urn_uuid_full_url_gets_that_id(client, core):
    body = _order_sign_request()
    entry = body["context"]["draftOrders"]["entry"][0]
    del entry["resource"]["id"]
    entry["fullUrl"] = "urn:uuid:5c1b6f0e-3e0e-4f51-9d89-0b2f2b0d1f11"
    assert client.post("/cds-services/calcinosis-order-sign", json=body).status_code == 200
    ids = {e["resource"].get("id") for e in core.bundles[0]["entry"] if e["resource"].get("status") == "draft"}
    assert "5c1b6f0e-3e0e-4f51-9d89-0b2f2b0d1f11" in ids


# -- partial prefetch searchsets ----------------------------------------------------------------------

def _partial_labs(body: dict, *, next_url: str | None = None, total: int | None = None,
                  outcome_text: str | None = None) -> dict:
    labs = body["prefetch"]["labs"]
    if next_url:
        labs["link"] = [{"relation": "next", "url": next_url}]
    if total is not None:
        labs["total"] = total
    if outcome_text:
        labs["entry"].append({"resource": {"resourceType": "OperationOutcome", "issue": [
            {"severity": "warning", "code": "incomplete", "diagnostics": outcome_text}]},
            "search": {"mode": "outcome"}})
    return body


def _located_notes(response) -> list[dict]:
    """The data notes with their locations, for the EHR's developers, in the card's extension."""
    card = response.get_json()["cards"][-1]
    return card["extension"]["calcinosis-cds.org/data-notes"]


def _data_notes(response) -> str:
    """The located notes' texts; the clinician's short lines are in the detail, without locations."""
    detail = response.get_json()["cards"][-1]["detail"]
    assert "**Data notes**" in detail
    assert "prefetch" not in detail and "Bundle.entry" not in detail
    return "\n".join(note["text"] for note in _located_notes(response))


@responses.activate
def test_a_prefetched_searchset_with_a_next_link_is_completed_from_the_allowlisted_fhir_server(client, core):
    body = _partial_labs(_request(), next_url=f"{EHR}/Observation?page=2")
    responses.get(f"{EHR}/Observation", json=_searchset([_observation("from-page-2")]),
                  match=[matchers.query_param_matcher({"page": "2"}),
                         matchers.header_matcher({"Authorization": f"Bearer {TOKEN}"})])
    response = _post(client, body)
    assert response.status_code == 200
    assert len(responses.calls) == 1
    ids = [e["resource"]["id"] for e in core.bundles[0]["entry"]]
    assert "from-page-2" in ids and "ca-7301" in ids


@responses.activate
def test_following_prefetch_pages_stops_at_the_page_cap_and_says_later_pages_may_be_more_recent(client, core):
    body = _partial_labs(_request(), next_url=f"{EHR}/Observation?page=2")
    responses.get(f"{EHR}/Observation", json=_searchset([_observation("p2")], f"{EHR}/Observation?page=3"),
                  match=[matchers.query_param_matcher({"page": "2"})])
    response = _post(client, body)
    assert len(responses.calls) == 1  # CDS_FHIR_MAX_PAGES=2 counts the prefetched page
    assert ("only the first 2 pages of Observation were read (CDS_FHIR_MAX_PAGES); further pages were not read; "
            "they may hold more recent results") in _data_notes(response)


@responses.activate
def test_a_partial_prefetch_without_an_allowlisted_server_is_kept_and_reported_in_data_notes(tmp_path, core):
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")})
    body = _partial_labs(_request(), next_url=f"{EHR}/Observation?page=2")
    response = _post(app.test_client(), body)
    assert response.status_code == 200
    assert len(responses.calls) == 0
    assert "prefetch 'labs' is only the first page of its search" in _data_notes(response)
    assert {"severity": "warning", "location": "prefetch.labs.link",
            "text": "prefetch 'labs' is only the first page of its search (it has a next link), and the rest could not "
                    "be read because no allowlisted fhirServer was given; later pages were not considered"} \
        in _located_notes(response)
    assert "- Lab results were read only in part: any result may be missing" in response.get_json()["cards"][-1]["detail"]
    assert "ca-7301" in [e["resource"]["id"] for e in core.bundles[0]["entry"]]


def test_a_prefetch_total_above_its_entries_is_reported(client):
    body = _partial_labs(_request(), total=40)
    notes = _data_notes(_post(client, body))
    assert "prefetch 'labs' holds 3 of the 40 matching resources the EHR reported" in notes


def test_outcome_entries_in_a_prefetch_are_carried_to_the_data_notes(client, core):
    body = _partial_labs(_request(), outcome_text="results from the reference lab could not be retrieved")
    response = _post(client, body)
    assert "results from the reference lab could not be retrieved" in _data_notes(response)
    assert ("- The EHR noted: results from the reference lab could not be retrieved"
            in response.get_json()["cards"][-1]["detail"])
    assert "OperationOutcome" not in _types(core.bundles[0])


def test_partial_data_with_nothing_else_to_say_still_gives_an_info_card(tmp_path, monkeypatch):
    from tests.support.cds_app import quiet_assessment

    monkeypatch.setattr(hook_call, "core_assess", FakeCore(quiet_assessment(PATIENT_ID)))
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")})
    response = _post(app.test_client(), _partial_labs(_request(), total=40))
    from tests.support.cds_spec import card_violations

    assert card_violations(response.get_json()) == []
    (card,) = response.get_json()["cards"]
    assert card["indicator"] == "info"
    assert "incomplete data" in card["summary"]
    assert "- Lab results were read only in part: any result may be missing" in card["detail"]
    (note,) = card["extension"]["calcinosis-cds.org/data-notes"]
    assert "holds 3 of the 40" in note["text"] and note["location"] == "prefetch.labs.total"


@responses.activate
def test_outcome_entries_from_the_fhir_server_are_reported(client):
    body = _request()
    del body["prefetch"]["labs"]
    page = _searchset([_observation("o1")])
    page["entry"].append({"resource": {"resourceType": "OperationOutcome", "issue": [
        {"severity": "warning", "code": "incomplete", "diagnostics": "archive not searched"}]},
        "search": {"mode": "outcome"}})
    responses.get(f"{EHR}/Observation", json=page)
    assert "archive not searched" in _data_notes(_post(client, body))


# -- the token only goes where the allowlist says -------------------------------------------------------

@responses.activate
def test_a_fhir_server_escaping_the_allowlisted_path_with_dot_segments_is_never_contacted(client):
    body = _request()
    del body["prefetch"]["patient"]
    body["fhirServer"] = "https://ehr.example.org/fhir/../uploads/attacker"
    outcome = _fallback_412(client, body)
    assert len(responses.calls) == 0
    assert "allowlist" in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize("fhir_server", [
    "https://ehr.example.org/fhir/%2e%2e/uploads",
    "https://ehr.example.org/fhir%2Fuploads",
    "http://[::1",
    "https://user@ehr.example.org/fhir",
    "https://ehr.example.org:notaport/fhir",
])
def test_a_fhir_server_url_that_cannot_be_trusted_as_written_is_refused_with_400(client, fhir_server):
    body = _request()
    body["fhirServer"] = fhir_server
    response = _post(client, body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["fhirServer"]


@pytest.mark.parametrize("url, allowed", [
    ("https://ehr.example.org/fhir", True),
    ("https://ehr.example.org:443/fhir/", True),
    ("https://ehr.example.org/fhir/./r4", True),
    ("https://ehr.example.org/fhir/../uploads", False),
    ("https://ehr.example.org/fhir/%2E%2E/uploads", False),
    ("http://ehr.example.org/fhir", False),
    ("https://ehr.example.org:8443/fhir", False),
    ("https://ehr.example.org@evil.example.net/fhir", False),
    ("https://[ehr.example.org/fhir", False),
])
def test_the_allowlist_compares_resolved_urls(url, allowed):
    from service.hooks.fhir_fetch import is_allowlisted

    assert is_allowlisted(url, [EHR]) is allowed


@responses.activate
def test_a_next_link_that_climbs_out_of_the_server_path_is_not_followed():
    fetcher = FhirFetcher(allowlist=["https://ehr.example.org/fhir/tenant-a"], connect_timeout=1, read_timeout=1,
                          max_pages=5)
    base = "https://ehr.example.org/fhir/tenant-a"
    responses.get(f"{base}/Observation", json=_searchset([_observation("o1")],
                                                         f"{base}/../tenant-b/Observation?page=2"))
    with pytest.raises(FetchError, match="another server"):
        fetcher.fetch(base, "Observation?patient=1", TOKEN)
    assert len(responses.calls) == 1


@responses.activate
def test_a_next_link_that_cannot_be_parsed_stops_paging_and_is_reported(client):
    body = _request()
    del body["prefetch"]["conditions"]
    responses.get(f"{EHR}/Condition", json={"resourceType": "Bundle", "type": "searchset", "entry": [],
                                            "link": [{"relation": "next", "url": "https://[ehr.example.org/fhir/x"}]})
    outcome = _fallback_412(client, body)
    assert outcome["issue"][0]["expression"] == ["prefetch.conditions"]
    assert "cannot be parsed" in outcome["issue"][0]["diagnostics"]
    assert len(responses.calls) == 1


@responses.activate
def test_a_redirect_from_the_fhir_server_is_not_followed_with_the_token(client):
    body = _request()
    del body["prefetch"]["patient"]
    responses.get(f"{EHR}/Patient/{PATIENT_ID}", status=302,
                  headers={"Location": "https://attacker.example.net/collect"})
    responses.get("https://attacker.example.net/collect", json={"resourceType": "Patient", "id": PATIENT_ID})
    outcome = _fallback_412(client, body)
    assert [c.request.url for c in responses.calls] == [f"{EHR}/Patient/{PATIENT_ID}"]
    assert "redirect" in outcome["issue"][0]["diagnostics"]


class _RecordingSession:
    """Stands in for requests.Session and remembers the keyword arguments of each GET."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def get(self, url, **kwargs):
        self.calls.append(dict(kwargs, url=url))
        raise requests.exceptions.ConnectTimeout("no answer")


def test_the_configured_connect_and_read_timeouts_are_passed_to_every_request():
    session = _RecordingSession()
    fetcher = FhirFetcher.from_config({"CDS_FHIR_SERVER_ALLOWLIST": [EHR], "CDS_FHIR_CONNECT_TIMEOUT_SECONDS": 2.5,
                                       "CDS_FHIR_READ_TIMEOUT_SECONDS": 7})
    fetcher.session = session
    with pytest.raises(FetchError, match="did not answer"):
        fetcher.fetch(EHR, f"Patient/{PATIENT_ID}", TOKEN)
    assert session.calls[0]["timeout"] == (2.5, 7.0)
    assert session.calls[0]["allow_redirects"] is False


@responses.activate
def test_logs_of_a_fallback_fetch_carry_neither_the_patient_id_nor_the_token(client, caplog):
    body = _request()
    del body["prefetch"]["patient"], body["prefetch"]["labs"]
    responses.get(f"{EHR}/Patient/{PATIENT_ID}", json={"resourceType": "Patient", "id": PATIENT_ID})
    responses.get(f"{EHR}/Observation", json=_searchset([_observation("o1")]))
    with caplog.at_level("DEBUG"):
        assert _post(client, body).status_code == 200
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "FHIR fetch Patient -> 200" in text
    assert PATIENT_ID not in text and TOKEN not in text and "code=" not in text


# -- data the FHIR server gives must be the context patient's ------------------------------------------

@responses.activate
def test_fhir_server_data_for_another_patient_gives_412_naming_the_key_without_the_ids(client):
    body = _request()
    del body["prefetch"]["conditions"]
    responses.get(f"{EHR}/Condition", json=_searchset([{"resourceType": "Patient", "id": "someone-else"}]))
    outcome = _fallback_412(client, body)
    issue = outcome["issue"][0]
    assert issue["expression"] == ["prefetch.conditions.entry[0].resource.id"]
    assert "prefetch 'conditions'" in issue["diagnostics"]
    assert "someone-else" not in json.dumps(outcome) and PATIENT_ID not in json.dumps(outcome)


@responses.activate
def test_a_fhir_server_entry_that_is_not_a_resource_gives_412_not_500(client):
    body = _request()
    del body["prefetch"]["conditions"]
    responses.get(f"{EHR}/Condition", json={"resourceType": "Bundle", "type": "searchset",
                                            "entry": [{"resource": {"resourceType": ["Condition"]}}]})
    outcome = _fallback_412(client, body)
    assert outcome["issue"][0]["expression"] == ["prefetch.conditions"]


@responses.activate
def test_a_fetched_result_that_could_not_be_read_is_located_at_the_resource_read_from_the_fhir_server(tmp_path):
    from tests.support.cds_fixtures import core_at_fixture_time

    body = _request()
    del body["prefetch"]["labs"]
    unreadable = dict(_observation("fetched-bad"), effectiveDateTime="2026-11-10",
                      valueQuantity={"value": 9.6, "unit": "mg/furlong"})
    responses.get(f"{EHR}/Observation", json=_searchset([unreadable, dict(_observation("fetched-ok"),
                                                                          effectiveDateTime="2026-11-10")]))
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
                    "CDS_FHIR_SERVER_ALLOWLIST": [EHR]})
    with core_at_fixture_time():
        response = _post(app.test_client(), body)
    assert response.status_code == 200
    notes = _located_notes(response)
    (note,) = [n for n in notes if "mg/furlong" in n["text"]]
    assert note["location"] == "Observation/fetched-bad.valueQuantity.unit"
    assert not any("prefetch.labs" in (n.get("location") or "") for n in notes)  # a key the EHR never sent
