"""Hostile shapes, generated: no request gets a 5xx, and each limit answers with its own 4xx.

Hypothesis builds the shapes that once reached a server error: nesting hundreds of levels deep
inside any object a hook call or a feedback call reads (context, draftOrders, prefetch,
fhirAuthorization, feedback), huge arrays in feedback, and values of the wrong JSON type wherever a
string is expected. The real core runs behind every hook call. Examples are bounded and
derandomized, so the run is the same in CI every time and stays short.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.web.json_depth import MAX_JSON_DEPTH
from tests.support.cds_app import make_app

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ("patient-view", "order-select", "order-sign")
MAX_FEEDBACK = 20  # CDS_MAX_FEEDBACK_ENTRIES for these tests: small, so "beyond it" stays cheap
BOUNDED = settings(max_examples=40, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.function_scoped_fixture])


def _request(hook: str) -> dict:
    return json.loads((ROOT / "fhir_fixtures" / "cds-hooks" / f"{hook}-request.json").read_text(encoding="utf-8"))


def _paths(value, prefix=()):
    """Every path into `value`, containers and leaves alike."""
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _string_paths(value, prefix=()):
    """Every path to a string leaf: where the service expects a string."""
    return [path for path in _paths(value, prefix) if isinstance(_get(value, path), str)]


def _get(value, path):
    for key in path:
        value = value[key]
    return value


def _with(body, path, replacement):
    body = json.loads(json.dumps(body))
    _get(body, path[:-1])[path[-1]] = replacement
    return body


# The nested objects the hooks read: every path under these roots is a place to nest deeply.
READ_ROOTS = ("context", "prefetch", "fhirAuthorization")
NESTING_PLACES = [(hook, path) for hook in HOOKS for path in _paths(_request(hook))
                  if path[0] in READ_ROOTS]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The real app and core; cards issued once, so feedback can name real cards."""
    db = tmp_path_factory.mktemp("hostile") / "feedback.sqlite3"
    client = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(db),
                       "CDS_MAX_FEEDBACK_ENTRIES": MAX_FEEDBACK}).test_client()
    response = client.post("/cds-services/calcinosis-order-select", json=_request("order-select"))
    assert response.status_code == 200
    return client, response.get_json()["cards"]


def _deep_bytes(shape: list[bool]) -> bytes:
    """A value nested len(shape) levels: an array where `shape` says True, else an object."""
    opening = b"".join(b"[" if is_array else b'{"x":' for is_array in shape)
    closing = b"".join(b"]" if is_array else b"}" for is_array in reversed(shape))
    return opening + b"1" + closing


def _body_with_deep_value(body: dict, path: tuple, shape: list[bool]) -> bytes:
    placed = _with(body, path, "@deep@")
    return orjson.dumps(placed).replace(b'"@deep@"', _deep_bytes(shape), 1)


# Depths around the limit, around where the recursive steps used to fail, and up to the reader's own.
depth_shapes = st.one_of(st.integers(MAX_JSON_DEPTH - 8, MAX_JSON_DEPTH + 8), st.integers(400, 1100)).flatmap(
    lambda levels: st.lists(st.booleans(), min_size=levels, max_size=levels))


@BOUNDED
@given(place=st.sampled_from(NESTING_PLACES), shape=depth_shapes)
def test_deep_nesting_inside_anything_a_hook_reads_is_a_400_or_an_answer_never_a_5xx(served, place, shape):
    client, _cards = served
    hook, path = place
    data = _body_with_deep_value(_request(hook), path, shape)
    response = client.post(f"/cds-services/calcinosis-{hook}", data=data, content_type="application/json")
    assert response.status_code < 500, (path, len(shape), response.get_data(as_text=True)[:300])
    depth = len(path) + len(shape)  # the root, one container per step but the last, then the value's own
    if depth > MAX_JSON_DEPTH:
        assert response.status_code == 400
        assert "nested deeper" in response.get_data(as_text=True)


FEEDBACK_PLACES = [("feedback", 0, "overrideReason"), ("feedback", 0, "overrideReason", "reason"),
                   ("feedback", 0, "acceptedSuggestions"), ("feedback", 0), ("feedback", 0, "extension")]


@BOUNDED
@given(path=st.sampled_from(FEEDBACK_PLACES), shape=depth_shapes)
def test_deep_nesting_inside_feedback_is_a_400_or_an_answer_never_a_5xx(served, path, shape):
    client, cards = served
    alert = cards[0]
    entry = {"card": alert["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-15T09:05:00Z",
             "overrideReason": {"reason": alert["overrideReasons"][0]}}
    data = _body_with_deep_value({"feedback": [entry]}, path, shape)
    response = client.post("/cds-services/calcinosis-order-select/feedback", data=data,
                           content_type="application/json")
    assert response.status_code < 500
    if len(path) + len(shape) > MAX_JSON_DEPTH:
        assert response.status_code == 400


def _entries(cards: list[dict]):
    """Feedback entries as clients send them, right or wrong: real cards, unknown cards, wrong types."""
    card_ids = st.sampled_from([card["uuid"] for card in cards] + ["6f1c2a5e-0000-4000-8000-000000000009"])
    wrong = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.booleans(),
                      st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
    reasons = st.sampled_from([reason for card in cards for reason in card.get("overrideReasons", ())])
    accepted = st.fixed_dictionaries({"card": card_ids, "outcome": st.just("accepted"),
                                      "outcomeTimestamp": st.just("2026-11-15T09:05:00Z"),
                                      "acceptedSuggestions": st.lists(st.fixed_dictionaries(
                                          {"id": st.sampled_from([s["uuid"] for c in cards
                                                                  for s in c.get("suggestions", ())])}),
                                          min_size=1, max_size=3)})
    overridden = st.fixed_dictionaries({"card": card_ids, "outcome": st.just("overridden"),
                                        "outcomeTimestamp": st.just("2026-11-15T09:05:00Z")},
                                       optional={"overrideReason": st.fixed_dictionaries(
                                           {"reason": reasons}, optional={"userComment": st.text(max_size=40)})})
    broken = st.fixed_dictionaries({}, optional={"card": st.one_of(card_ids, wrong), "outcome": wrong,
                                                 "outcomeTimestamp": wrong, "acceptedSuggestions": wrong,
                                                 "overrideReason": wrong})
    return st.one_of(accepted, overridden, broken)


# Array sizes below, at and beyond the limit, and far beyond it.
sizes = st.sampled_from([1, 2, MAX_FEEDBACK - 1, MAX_FEEDBACK, MAX_FEEDBACK + 1, 5 * MAX_FEEDBACK, 20_000])


@BOUNDED
@given(data=st.data(), count=sizes, suggestions=sizes)
def test_huge_arrays_in_feedback_are_a_413_and_never_a_5xx(served, data, count, suggestions):
    client, cards = served
    entry = data.draw(_entries(cards), label="entry")
    first = dict(entry)  # only the first entry's suggestions grow: the body stays a few megabytes
    if first.get("outcome") == "accepted" and isinstance(first.get("acceptedSuggestions"), list):
        first["acceptedSuggestions"] = (first["acceptedSuggestions"] * suggestions)[:suggestions]
    body = {"feedback": [first] + [entry] * (count - 1)}
    response = client.post("/cds-services/calcinosis-order-select/feedback", json=body)
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if count > MAX_FEEDBACK:
        assert response.status_code == 413
    elif response.status_code == 413:
        assert len(first["acceptedSuggestions"]) > MAX_FEEDBACK


wrong_types = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                        st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=3),
                        st.dictionaries(st.sampled_from(["reference", "code", "system", "x"]),
                                        st.one_of(st.integers(), st.text(max_size=4)), max_size=2),
                        st.lists(st.lists(st.lists(st.none(), max_size=1), max_size=1), max_size=1))
STRING_PLACES = [(hook, path) for hook in HOOKS for path in _string_paths(_request(hook))]


@BOUNDED
@given(place=st.sampled_from(STRING_PLACES), value=wrong_types)
def test_a_non_string_where_a_hook_expects_a_string_is_never_a_5xx(served, place, value):
    client, _cards = served
    hook, path = place
    response = client.post(f"/cds-services/calcinosis-{hook}", json=_with(_request(hook), path, value))
    assert response.status_code < 500, (path, value, response.get_data(as_text=True)[:300])


@BOUNDED
@given(data=st.data(), value=wrong_types)
def test_a_non_string_where_feedback_expects_a_string_is_never_a_5xx(served, data, value):
    client, cards = served
    alert, assessment = cards[0], cards[1]
    body = {"feedback": [
        {"card": alert["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-15T09:05:00Z",
         "overrideReason": {"reason": alert["overrideReasons"][0], "userComment": "seen"}},
        {"card": assessment["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-15T09:06:00Z",
         "acceptedSuggestions": [{"id": assessment["suggestions"][0]["uuid"]}]}]}
    path = data.draw(st.sampled_from(_string_paths(body)), label="path")
    response = client.post("/cds-services/calcinosis-order-select/feedback", json=_with(body, path, value))
    assert response.status_code < 500, (path, value, response.get_data(as_text=True)[:300])
    if value is not None or path[-1] not in ("display", "userComment"):  # those two may be left out (null)
        assert response.status_code == 400, (path, value)


ASSESS_BUNDLE = json.loads((ROOT / "fhir_fixtures" / "assess" / "04-metastatic-esrd.json").read_text(encoding="utf-8"))
# Every string the core reads, resourceType (the Bundle's and each entry's) included.
ASSESS_STRING_PLACES = _string_paths(ASSESS_BUNDLE)
ASSESS_RESOURCE_TYPE_PLACES = [path for path in ASSESS_STRING_PLACES if path[-1] == "resourceType"]


@BOUNDED
@given(path=st.sampled_from(ASSESS_STRING_PLACES), value=wrong_types)
def test_a_non_string_where_assess_expects_a_string_is_never_a_5xx(served, path, value):
    client, _cards = served
    response = client.post("/fhir/$assess", json=_with(ASSESS_BUNDLE, path, value))
    assert response.status_code < 500, (path, value, response.get_data(as_text=True)[:300])


@BOUNDED
@given(path=st.sampled_from(ASSESS_RESOURCE_TYPE_PLACES), value=wrong_types)
def test_a_non_string_resource_type_in_assess_is_refused_as_a_4xx(served, path, value):
    # Drawn on its own so that every run reaches resourceType, among the many other string places.
    client, _cards = served
    response = client.post("/fhir/$assess", json=_with(ASSESS_BUNDLE, path, value))
    assert 400 <= response.status_code < 500, (path, value, response.get_data(as_text=True)[:300])
