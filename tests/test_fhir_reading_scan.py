"""The resource scan (depth, long texts): its shortcut over the serialized bytes agrees with the walk."""

from __future__ import annotations

import copy

import pytest

from service.fhir_reading import elements
from service.fhir_reading.elements import MAX_TEXT_LENGTH, scan_resource

DEPTH = 64


def _walk(resource):
    """The scan without its shortcut."""
    saved = elements._plainly_within_limits
    elements._plainly_within_limits = lambda *_: False
    try:
        return scan_resource(resource, DEPTH)
    finally:
        elements._plainly_within_limits = saved


def _nested(levels: int) -> dict:
    """A resource whose deepest container sits `levels` levels below it."""
    inner: dict = {"url": "x"}
    for _ in range(levels - 1):
        inner = {"extension": [inner]} if isinstance(inner, dict) else {"x": inner}
    return {"resourceType": "Observation", "extension": [inner]} if levels else {"resourceType": "Observation"}


def _chain(levels: int) -> dict:
    """Objects nested `levels` deep, one in another."""
    resource: dict = {"resourceType": "Observation"}
    current = resource
    for _ in range(levels):
        current["x"] = {}
        current = current["x"]
    return resource


LONG = "x" * (MAX_TEXT_LENGTH + 1)
AT_LIMIT = "x" * MAX_TEXT_LENGTH

CASES = {
    "plain": {"resourceType": "Observation", "status": "final", "code": {"text": "Calcium"}},
    "text at the limit": {"resourceType": "Observation", "code": {"text": AT_LIMIT}},
    "long text": {"resourceType": "Observation", "code": {"text": LONG}},
    "long display": {"resourceType": "Observation", "code": {"coding": [{"code": "1", "display": LONG}]}},
    "long code": {"resourceType": "Observation", "code": {"coding": [{"code": LONG}]}},
    "long valueString": {"resourceType": "Observation", "valueString": LONG},
    "long text in a list": {"resourceType": "Observation", "text": [LONG, "a"]},
    "long note (not read)": {"resourceType": "Observation", "note": [{"text": LONG}]},
    "long key": {"resourceType": "Observation", LONG: "a"},
    "long non-ASCII text": {"resourceType": "Observation", "code": {"text": "é" * (MAX_TEXT_LENGTH + 1)}},
    "non-ASCII text at the limit": {"resourceType": "Observation", "code": {"text": "日" * MAX_TEXT_LENGTH}},
    "long text of quotes": {"resourceType": "Observation", "code": {"text": '"' * (MAX_TEXT_LENGTH + 1)}},
    "long text of backslashes": {"resourceType": "Observation", "code": {"text": "\\" * (MAX_TEXT_LENGTH + 1)}},
    "long text of newlines": {"resourceType": "Observation", "code": {"text": "\n" * (MAX_TEXT_LENGTH + 1)}},
    "many numbers": {"resourceType": "Observation", "valueSampledData": {"data": list(range(2000))}},
    "many short texts": {"resourceType": "Observation", "code": {"coding": [{"display": "y" * 900}] * 5}},
    "quote in text": {"resourceType": "Observation", "code": {"text": 'say "hi"'}},
    "brackets in text": {"resourceType": "Observation", "code": {"text": "[{" * 100}},
    "big integer": {"resourceType": "Observation", "valueInteger": 2 ** 70, "code": {"text": LONG}},
    "float": {"resourceType": "Observation", "valueQuantity": {"value": 1.5}},
    "lone surrogate": {"resourceType": "Observation", "code": {"text": "\ud800" + LONG}},
    "integer key": {"resourceType": "Observation", 1: {"text": LONG}},
    "depth at the limit": _chain(DEPTH),
    "one level too deep": _chain(DEPTH + 1),
    "lists at the limit": _nested(DEPTH),
    "lists one level too deep": _nested(DEPTH + 1),
    "deep and long": dict(_chain(DEPTH + 1), code={"text": LONG}),
}


class _Text(str):
    """A str subclass: the walk treats it as text it must look at."""


CASES["str subclass"] = {"resourceType": "Observation", "code": {"text": _Text(LONG)}}
CASES["short str subclass"] = {"resourceType": "Observation", "code": {"text": _Text("a")}}


@pytest.mark.parametrize("name", sorted(CASES, key=str))
def test_the_shortcut_agrees_with_the_walk(name):
    resource = CASES[name]
    before = copy.deepcopy(resource) if name != "lone surrogate" else None
    assert scan_resource(resource, DEPTH) == _walk(resource)
    if before is not None:
        assert resource == before  # read, never changed


def test_the_walk_finds_what_the_cases_say():
    assert _walk(CASES["long display"]) == (False, ["code.coding[0].display"])
    assert _walk(CASES["one level too deep"]) == (True, [])
    assert _walk(CASES["depth at the limit"]) == (False, [])
    assert scan_resource(CASES["long text of quotes"], DEPTH) == (False, ["code.text"])
    assert scan_resource(CASES["lists one level too deep"], DEPTH) == (True, [])
    assert scan_resource(CASES["long non-ASCII text"], DEPTH) == (False, ["code.text"])


def test_the_shortcut_settles_ordinary_resources():
    assert elements._plainly_within_limits(CASES["plain"], DEPTH)
    assert elements._plainly_within_limits(CASES["text at the limit"], DEPTH)
    assert not elements._plainly_within_limits(CASES["long text"], DEPTH)
    assert not elements._plainly_within_limits(CASES["one level too deep"], DEPTH)
