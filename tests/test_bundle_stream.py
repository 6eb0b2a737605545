"""A large `$assess` body read entry by entry gives what the same body decoded whole gives, and bad
input streamed is still a 4xx OperationOutcome naming where."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import orjson
import pytest

from conftest import FIXTURES_DIR
from service.errors import InputError
from service.fhir_outputs.result_bundle import build_result_bundle
from service.pipeline.assess import get_assessor
from service.pipeline.bundle_stream import StreamedBundle, bytes_exceed_depth, entry_types
from service.web.http_io import decode_bundle
from service.web.json_depth import MAX_JSON_DEPTH, exceeds_depth
from tests.support.cds_app import make_app

NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)
INPUTS = sorted(path for path in (FIXTURES_DIR / "assess").glob("*.json") if ".expected" not in path.name)


def _result(bundle: object) -> bytes:
    try:
        run = get_assessor().assess(bundle, now=NOW)
    except InputError as error:
        return repr(error.issues).encode()
    return orjson.dumps(build_result_bundle(run.patients, run.issues))


@pytest.mark.parametrize("path", INPUTS, ids=lambda path: path.stem)
def test_every_fixture_streamed_gives_the_bytes_it_gives_decoded_whole(path):
    body = path.read_bytes()
    streamed = decode_bundle(body, stream_from=0)
    assert isinstance(streamed, StreamedBundle)
    assert _result(streamed) == _result(orjson.loads(body))
    assert entry_types(streamed) == entry_types(orjson.loads(body))


def test_only_large_bodies_are_streamed():
    body = (FIXTURES_DIR / "assess" / "04-metastatic-esrd.json").read_bytes()
    assert isinstance(decode_bundle(body), dict)
    assert isinstance(decode_bundle(body, stream_from=len(body)), StreamedBundle)


def _refusal(body: bytes) -> tuple[str, str]:
    with pytest.raises(InputError) as caught:
        StreamedBundle(body, max_depth=MAX_JSON_DEPTH)
    (issue,) = caught.value.issues
    assert caught.value.status == 400 and issue.code == "structure"
    return issue.location, issue.diagnostics


ENTRY = b'{"resource":{"resourceType":"Observation","id":"o","status":"final"}}'


def test_truncated_json_names_the_entry_it_stops_in():
    location, text = _refusal(b'{"resourceType":"Bundle","type":"collection","entry":[' + ENTRY + b"," + ENTRY[:30])
    assert location == "Bundle.entry[1]" and text.startswith("body is not valid JSON")


def test_malformed_json_names_its_entry_without_quoting_the_body():
    location, text = _refusal(b'{"resourceType":"Bundle","entry":[' + ENTRY + b',{"resource":{"secret":tru}}]}')
    assert location == "Bundle.entry[1]" and "secret" not in text


def test_too_deep_json_names_the_first_container_beyond_the_limit():
    deep = b"[" * 120 + b"]" * 120
    location, text = _refusal(b'{"resourceType":"Bundle","entry":[' + ENTRY + b',{"resource":{"a":' + deep + b"}}]}")
    assert location.startswith("Bundle.entry[1].resource.a[0][0]") and "nested deeper than the 100 levels" in text


def test_a_truncated_deep_body_is_refused_as_deep_or_as_not_json_never_parsed_further():
    location, _ = _refusal(b'{"resourceType":"Bundle","entry":[{"resource":' + b"[" * 100_000)
    assert location.startswith("Bundle.entry[0]")


def test_entry_named_twice_is_refused():
    location, _ = _refusal(b'{"resourceType":"Bundle","type":"collection","entry":[],"entry":[' + ENTRY + b"]}")
    assert location == "Bundle.entry"


@pytest.mark.parametrize("depth", [1, 2, 50, 99, 100, 101, 150])
def test_the_byte_depth_check_agrees_with_the_decoded_one(depth):
    value: object = "x[{\\\"]}"
    for level in range(depth):
        value = [value] if level % 2 else {"k[": value, "s": "]]}\\\\"}
    body = json.dumps(value).encode()
    assert bytes_exceed_depth(body, MAX_JSON_DEPTH) == exceeds_depth(orjson.loads(body))


def test_non_object_entries_streamed_are_refused_with_their_places():
    body = b'{"resourceType":"Bundle","type":"collection","entry":[' + ENTRY + b',3,[1],{"resource":"x"}]}'
    with pytest.raises(InputError) as caught:
        get_assessor().assess(StreamedBundle(body, max_depth=MAX_JSON_DEPTH), now=NOW)
    assert caught.value.status == 422
    assert [issue.location for issue in caught.value.issues] == [
        "Bundle.entry[1]", "Bundle.entry[2]", "Bundle.entry[3].resource"]


def test_a_streamed_body_over_http_is_refused_or_assessed_like_a_decoded_one(tmp_path, monkeypatch):
    import service.web.http_io as http_io

    client = make_app({"CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
                       "EVALUATION_TIME": "2026-11-15T09:00:00Z"}).test_client()
    body = (FIXTURES_DIR / "assess" / "04-metastatic-esrd.json").read_bytes()
    whole = client.post("/fhir/$assess", data=body, headers={"Content-Type": "application/fhir+json"})
    monkeypatch.setattr(http_io, "STREAM_FROM_BYTES", 0)
    monkeypatch.setattr(http_io.read_bundle_body, "__kwdefaults__", {"stream_from": 0})
    streamed = client.post("/fhir/$assess", data=body, headers={"Content-Type": "application/fhir+json"})
    assert streamed.status_code == whole.status_code == 200
    assert streamed.data == whole.data
    broken = client.post("/fhir/$assess", data=body[: len(body) // 2], headers={"Content-Type": "application/fhir+json"})
    assert broken.status_code == 400
    (issue,) = broken.get_json()["issue"]
    assert issue["expression"][0].startswith("Bundle")


@pytest.mark.parametrize("kind", [{"a": 1}, ["Observation"], 3, None])
@pytest.mark.parametrize("streamed", [False, True])
def test_a_searchset_entry_with_a_malformed_resource_type_is_a_422(kind, streamed):
    body = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "total": 5, "entry": [
        {"resource": {"resourceType": "Patient", "id": "p"}, "search": {"mode": "match"}},
        {"resource": {"resourceType": kind, "id": "o"}, "search": {"mode": "match"}}]})
    bundle = StreamedBundle(body, max_depth=MAX_JSON_DEPTH) if streamed else orjson.loads(body)
    with pytest.raises(InputError) as caught:
        get_assessor().assess(bundle, now=NOW)
    assert caught.value.status == 422
    assert [issue.location for issue in caught.value.issues] == ["Bundle.entry[1].resource.resourceType"]
