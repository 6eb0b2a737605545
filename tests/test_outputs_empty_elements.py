"""Leaving out empty elements: the fast paths give what the plain recursive definition gives."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from service.fhir_outputs.empty_elements import without_empty_elements

_CONTENT = re.compile(r"[ \r\n\t\S]")


def _reference(value: Any) -> Any:
    """The definition: empty strings (no R4 content character), objects and arrays left out, depth first."""
    if isinstance(value, str):
        return value if _CONTENT.search(value) else None
    if isinstance(value, dict):
        kept = {key: item for key, item in ((key, _reference(item)) for key, item in value.items()) if item is not None}
        return kept or None
    if isinstance(value, list):
        items = [item for item in map(_reference, value) if item is not None]
        return items or None
    return value


class _Text(str):
    pass


_TEXTS = st.one_of(st.text(alphabet=" \t\r\n\x0b\x0c\u00a0\u2003ab", max_size=4), st.text(max_size=3),
                   st.builds(_Text, st.sampled_from(["", "\x0b", "x"])))
_SCALARS = st.one_of(_TEXTS, st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from("abcd"), inner, max_size=4)), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_the_result_is_the_plain_definitions(value):
    assert without_empty_elements(value) == _reference(value)


def test_objects_and_arrays_are_copies():
    value = {"a": {"b": ["x"]}}
    result = without_empty_elements(value)
    assert result == value and result is not value and result["a"] is not value["a"]
    assert result["a"]["b"] is not value["a"]["b"]
