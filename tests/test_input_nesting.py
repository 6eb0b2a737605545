"""Nesting is bounded by one limit, checked once when the body is read, below what every later step can take.

A value nested 500 levels deep inside a draft order used to exhaust Python's recursion (a 500);
the JSON reader alone accepts 1,024 levels. Now every body deeper than MAX_JSON_DEPTH is a 400
naming where, whichever nested object the hooks read holds it, and a body exactly at the limit
passes through every step (copies, validation, the core, serialization) without a server error.
"""

from __future__ import annotations

import copy
import json

import orjson
import pytest

from conftest import FIXTURES_DIR
from service.web.json_depth import MAX_JSON_DEPTH, exceeds_depth, too_deep_location

HOOKS = FIXTURES_DIR / "cds-hooks"
FEEDBACK = {"feedback": [{"card": "6f1c2a5e-0000-4000-8000-000000000001", "outcome": "overridden",
                          "overrideReason": {"reason": {"system": "urn:x", "code": "x"}},
                          "outcomeTimestamp": "2026-11-15T09:05:00Z"}]}

# (route, request body, where a deep value goes): every nested object a hook or feedback call reads.
PLACES = [
    ("/cds-services/calcinosis-order-sign", "order-sign", ("context", "draftOrders", "entry", 0, "resource", "note")),
    ("/cds-services/calcinosis-order-select", "order-select",
     ("context", "draftOrders", "entry", 0, "resource", "dosageInstruction", 0, "route", "extension")),
    ("/cds-services/calcinosis-order-sign", "order-sign", ("context", "draftOrders", "meta")),
    ("/cds-services/calcinosis-patient-view", "patient-view", ("context", "extra")),
    ("/cds-services/calcinosis-patient-view", "patient-view", ("prefetch", "patient", "extension")),
    ("/cds-services/calcinosis-patient-view", "patient-view", ("prefetch", "labs", "entry", 0, "resource", "note")),
    ("/cds-services/calcinosis-patient-view", "patient-view", ("prefetch", "extra")),
    ("/cds-services/calcinosis-patient-view", "patient-view", ("fhirAuthorization", "extra")),
    ("/cds-services/calcinosis-order-sign/feedback", "feedback", ("feedback", 0, "overrideReason", "reason", "extension")),
    ("/fhir/$assess", "assess", ("entry", 0, "resource", "extension")),
]


def _body(kind: str) -> dict:
    if kind == "feedback":
        return copy.deepcopy(FEEDBACK)
    if kind == "assess":
        return {"resourceType": "Bundle", "type": "collection",
                "entry": [{"resource": {"resourceType": "Observation", "id": "o1", "status": "final"}}]}
    return json.loads((HOOKS / f"{kind}-request.json").read_text(encoding="utf-8"))


def _with_depth(kind: str, path: tuple, total_depth: int) -> bytes:
    """The body of `kind` with a value at `path` making the whole body exactly `total_depth` levels deep."""
    body = _body(kind)
    holder = body
    for key in path[:-1]:
        holder = holder[key]
    # The containers enclosing the new value: the root and one per step of the path but the last.
    # Written as text: orjson (like the service's responses) writes nothing deeper than 254 levels.
    levels = total_depth - len(path)
    holder[path[-1]] = "@deep@"
    data = orjson.dumps(body).replace(b'"@deep@"', b"[" * levels + b"]" * levels)
    assert _depth(orjson.loads(data)) == total_depth
    return data


def _depth(value) -> int:
    deepest, stack = 0, [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)
                     if isinstance(child, (dict, list)))
    return deepest


def _location(path: tuple, kind: str) -> str:
    text = "Bundle" if kind == "assess" else ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else f".{key}"
    return text.lstrip(".")


@pytest.mark.parametrize("route, kind, path", PLACES, ids=[".".join(map(str, p[2])) for p in PLACES])
def test_five_hundred_levels_anywhere_the_hooks_read_is_a_400_naming_the_place(client, route, kind, path):
    response = client.post(route, data=_with_depth(kind, path, 600), content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    (issue,) = response.get_json()["issue"]
    assert f"nested deeper than the {MAX_JSON_DEPTH} levels" in issue["diagnostics"]
    assert issue["expression"][0].startswith(_location(path, kind))


@pytest.mark.parametrize("route, kind, path", PLACES, ids=[".".join(map(str, p[2])) for p in PLACES])
def test_a_body_at_the_limit_passes_every_step_without_a_server_error(client, route, kind, path):
    response = client.post(route, data=_with_depth(kind, path, MAX_JSON_DEPTH), content_type="application/json")
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code >= 400:
        assert "nested deeper" not in response.get_data(as_text=True)


@pytest.mark.parametrize("route, kind, path", PLACES[:1] + PLACES[-1:], ids=["draft-order", "assess"])
def test_one_level_beyond_the_limit_is_refused(client, route, kind, path):
    response = client.post(route, data=_with_depth(kind, path, MAX_JSON_DEPTH + 1), content_type="application/json")
    assert response.status_code == 400
    assert "nested deeper" in response.get_data(as_text=True)


def test_the_limit_is_far_below_what_the_recursive_steps_can_take():
    """The draft-order copy failed from about 500 levels; the limit keeps a wide margin below it."""
    import sys

    assert MAX_JSON_DEPTH * 4 <= sys.getrecursionlimit()
    assert MAX_JSON_DEPTH < 254  # orjson refuses to write anything deeper


def test_the_depth_check_itself_does_not_recurse():
    value: list = []
    for _ in range(100_000):
        value = [value]
    assert exceeds_depth(value)
    assert too_deep_location({"resourceType": "Bundle", "entry": value}).startswith("Bundle.entry[0][0]")


def test_a_location_is_cut_and_escaped_when_the_keys_are_long_or_strange():
    value: dict | str = "x"
    for _ in range(MAX_JSON_DEPTH + 5):
        value = {"k" * 1000 + "\n": value}
    location = too_deep_location(value)
    assert "\n" not in location and len(location) <= 243


@pytest.fixture(params=["written", "padded"])
def depth_check(request, monkeypatch):
    """Each way the parse holds the depth (by size: small bodies are written, large ones padded)."""
    import service.web.http_io as http_io

    monkeypatch.setattr(http_io, "WRITER_CHECK_BELOW_BYTES", 1 << 40 if request.param == "written" else 0)
    return request.param


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 50, 98, 99, 100, 101, 102, 150, 1023, 1024, 1025, 5000])
@pytest.mark.parametrize("innermost", [b"1", b"{}", b'{"a":[]}', b'"[[{"'])
def test_the_parse_refuses_exactly_the_bodies_deeper_than_the_limit(depth, innermost, depth_check):
    from service.errors import InputError
    from service.web.http_io import decode_json

    body = b"".join(b'{"k":' if level % 2 else b"[" for level in range(depth)) + innermost + b"".join(
        b"}" if level % 2 else b"]" for level in reversed(range(depth)))
    inner = 0 if innermost in (b"1", b'"[[{"') else 1 if innermost == b"{}" else 2
    expected_too_deep = depth + inner > MAX_JSON_DEPTH
    try:
        value = decode_json(body)
    except InputError as error:
        assert expected_too_deep and error.status == 400
        assert "nested deeper than the 100 levels" in error.issues[0].diagnostics
    else:
        assert not expected_too_deep and value == orjson.loads(body)


@pytest.mark.parametrize("body", [b"1],[2", b"],[", b'{"resourceType": "Bundle", "type": "collection"}],[{"entry": []}',
                                  b"[1]],[[2]"])
def test_text_that_is_json_only_once_padded_is_refused_not_cut_short(body, depth_check):
    """The parse of a large body pads it with arrays to let orjson hold the depth: text that closes those
    arrays early must still be refused as not JSON, never read as its first value or fail with a 500."""
    from service.errors import InputError
    from service.web.http_io import decode_json

    with pytest.raises(InputError) as refused:
        decode_json(body)
    assert refused.value.status == 400
    assert "not valid JSON" in refused.value.issues[0].diagnostics


@pytest.mark.parametrize("container", ["array", "object"])
def test_the_writers_depth_limit_tells_exactly_which_values_the_walk_must_check(container):
    """The quick check leans on orjson refusing to write values nested deeper than it allows: a value
    at the limit must pass it, one level more must be left to the exact walk (which refuses it)."""
    from service.web.http_io import _may_exceed_depth

    def nested(depth: int) -> object:
        value: object = 1
        for _ in range(depth):
            value = [value] if container == "array" else {"k": value}
        return value

    assert not _may_exceed_depth(nested(MAX_JSON_DEPTH)) and not exceeds_depth(nested(MAX_JSON_DEPTH))
    assert _may_exceed_depth(nested(MAX_JSON_DEPTH + 1)) and exceeds_depth(nested(MAX_JSON_DEPTH + 1))


def test_a_large_body_is_held_to_the_limit_by_the_padded_parse_and_a_small_one_by_the_writer(monkeypatch):
    """Both ways give the same answers (the tests above run each); this checks which one a size takes."""
    import service.web.http_io as http_io

    taken = []
    monkeypatch.setattr(http_io, "_may_exceed_depth", lambda value: taken.append("written") or False)
    real_padded = http_io._parsed_in_padding
    monkeypatch.setattr(http_io, "_parsed_in_padding", lambda body: taken.append("padded") or real_padded(body))
    small = b'{"a": [1, 2, 3]}'
    large = b'{"a": "' + b"x" * http_io.WRITER_CHECK_BELOW_BYTES + b'"}'
    assert http_io.decode_json(small) == {"a": [1, 2, 3]} and taken == ["written"]
    assert http_io.decode_json(large)["a"].startswith("x") and taken == ["written", "padded"]
