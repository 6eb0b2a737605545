"""Reference checks: the id and uri shortcuts say what their patterns say, and every key of an entry appears once."""

from __future__ import annotations

import sys

import pytest

from service.fhir_reading import references
from service.fhir_reading.references import is_valid_id, is_valid_uri, reference_keys

# Every whitespace and control character, format and separator characters, surrogates, and the ASCII set.
SPECIAL = [chr(code) for code in range(0, 0x250)] + [
    "\u1680", "\u180e", "\u2000", "\u200a", "\u200b", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000",
    "\ufeff", "\u00ad", "\ud800", "\udfff", "\U0001f600", chr(sys.maxunicode)]


def _texts() -> list[str]:
    texts = ["", "a", "a" * 64, "a" * 65, "Patient-1.x", "abc\n", "abc\n\n", "\nabc", "urn:uuid:5fd069dc-e337-4062",
             "https://host/fhir/Patient/1", "a b"]
    for char in SPECIAL:
        texts += [char, f"a{char}", f"{char}a", f"ab{char}cd", "x" * 63 + char]
    return texts


@pytest.mark.parametrize("text", _texts())
def test_id_and_uri_shortcuts_agree_with_the_patterns(text):
    assert is_valid_id(text) == (references._FHIR_ID.match(text) is not None)
    assert is_valid_uri(text) == (bool(text) and references._NOT_IN_URI.search(text) is None)


def test_non_strings_are_neither_ids_nor_uris():
    for value in (None, 1, 1.5, True, ["a"], {"a": 1}, b"abc"):
        assert not is_valid_id(value) and not is_valid_uri(value)


def test_a_trailing_newline_stays_as_the_pattern_reads_it():
    assert is_valid_id("abc\n")  # `$` lets one newline through: unchanged behaviour
    assert not is_valid_uri("urn:uuid:1\n")


@pytest.mark.parametrize("resource_type, resource_id, full_url, expected", [
    ("Patient", "1", "urn:uuid:abc", ["urn:uuid:abc", "Patient/1"]),
    ("Patient", "1", "https://host/fhir/Patient/1", ["https://host/fhir/Patient/1", "Patient/1"]),
    ("Patient", "2", "https://host/fhir/Patient/1", ["https://host/fhir/Patient/1", "Patient/1", "Patient/2"]),
    ("Patient", "1", "Patient/1", ["Patient/1"]),  # a relative fullUrl is its own Type/id: once
    ("Observation", "1", "Patient/1", ["Patient/1", "Observation/1"]),
    ("Patient", "bad id", "urn:uuid:abc", ["urn:uuid:abc"]),
    ("Patient", "1", None, ["Patient/1"]),
    ("Patient", None, None, []),
    (None, "1", "urn:uuid:abc", ["urn:uuid:abc"]),
])
def test_reference_keys_list_each_key_once_in_order(resource_type, resource_id, full_url, expected):
    assert reference_keys(resource_type, resource_id, full_url) == expected
