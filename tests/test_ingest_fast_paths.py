"""Ingest's shortcuts give what the plain computations give: a reference is resolved once per bundle."""

from __future__ import annotations

import itertools

from service.fhir_reading.references import server_base
from service.pipeline.ingest import _BundleReader
from service.pipeline.selection import default_selection

FULL_URLS = [None, "urn:uuid:6d1b8c55-3c1e-4a7e-9f8e-2f0c8a1b2c3d", "https://ehr.example.org/fhir/Patient/p1",
             "https://other.example.org/fhir/Patient/p1", "http://ehr.example.org/fhir/Observation/o1", "",
             "urn:oid:1.2.3", "Patient/p2"]
REFERENCES = ["Patient/p1", "Patient/p2", "Patient/p3", "urn:uuid:6d1b8c55-3c1e-4a7e-9f8e-2f0c8a1b2c3d",
              "https://ehr.example.org/fhir/Patient/p1", "Observation/o1", "#contained", "Patient?identifier=x",
              "Patient/p1/_history/2", "https://third.example.org/fhir/Patient/p1"]


def _reader() -> _BundleReader:
    """A reader over entries that make some spellings ambiguous (Patient/p1 on two servers)."""
    reader = _BundleReader("collection", default_selection())
    entries = [{"fullUrl": url, "resource": {"resourceType": "Patient", "id": "p1"}} for url in FULL_URLS[1:4]]
    entries += [{"resource": {"resourceType": "Patient", "id": "p2"}},
                {"fullUrl": FULL_URLS[4], "resource": {"resourceType": "Observation", "id": "o1"}}]
    for position, raw in enumerate(entries):
        usable = reader._entry(position, raw)
        if usable is not None:
            reader.types[position] = usable[0]
    return reader


def test_a_remembered_resolution_is_the_index_lookup_from_the_referrers_base():
    reader = _reader()
    for _ in range(2):  # the second round answers from what was remembered
        for reference, full_url in itertools.product(REFERENCES, FULL_URLS):
            assert reader._lookup(reference, full_url) == reader.index.lookup(reference, server_base(full_url))
    assert reader._lookup("Patient/p1", None).ambiguous


# --- the plain entry shape is read as any entry is ---------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_URLS = st.sampled_from([None, "urn:uuid:6d1b8c55-3c1e-4a7e-9f8e-2f0c8a1b2c3d", "urn:uuid:0f9e", "urn:oid:1.2.3",
                         "urn:uuid: spaced", "urn:uuid:\x00x", "urn:uuid:\u2003x", "urn:", "", "Patient/p1",
                         "https://ehr.example.org/fhir/Patient/p1", 7])
_IDS = st.sampled_from([None, "p1", "o1", "x" * 65, "bad id", "", 3, "urn:uuid:0f9e"])
_TYPES = st.sampled_from(["Patient", "Observation", "Encounter", "Claim", "", None, 4])
_RAW = st.one_of(
    st.builds(lambda url, kind, ident: {k: v for k, v in (("fullUrl", url), ("resource", {
        k2: v2 for k2, v2 in (("resourceType", kind), ("id", ident)) if v2 is not None})) if v is not None},
              _URLS, _TYPES, _IDS),
    st.sampled_from([{"resource": None}, {"resource": "x"}, "entry", {"request": {"method": "GET"}}]))


def _state(reader: _BundleReader, read: list) -> tuple:
    return (read, reader.full_urls, reader.unnamed, reader.index._targets, reader.index._ambiguous,
            reader.issues, reader.malformed)


def _entry_fields(usable) -> tuple | None:
    """(resourceType, resource, fullUrl) of a usable entry, None for one that is not."""
    if usable is None:
        return None
    resource_type, resource, full_url = usable
    return resource_type, resource, full_url


@settings(max_examples=400, deadline=None)
@given(raws=st.lists(_RAW, max_size=6))
def test_an_entry_of_the_plain_shape_is_read_as_any_entry_is(raws):
    fast, plain = _BundleReader("collection", default_selection()), _BundleReader("collection", default_selection())
    fast_read = [_entry_fields(fast._entry(position, raw)) for position, raw in enumerate(raws)]
    plain_read = [_entry_fields(plain._any_entry(position, raw)) for position, raw in enumerate(raws)]
    assert _state(fast, fast_read) == _state(plain, plain_read)


def test_the_plain_shape_is_what_bundles_are_made_of():
    reader = _BundleReader("collection", default_selection())
    raw = {"fullUrl": "urn:uuid:6d1b8c55-3c1e-4a7e-9f8e-2f0c8a1b2c3d", "resource": {"resourceType": "Patient", "id": "p1"}}
    assert reader._plain_entry(0, raw) is not None
    assert reader._plain_entry(1, raw) is None  # the same fullUrl again: the general reading reports it
    assert reader._plain_entry(2, {"resource": {"resourceType": "Patient", "id": "p2"}}) is None


@settings(max_examples=200, deadline=None)
@given(index=st.integers(0, 10_000), path=st.sampled_from(["", "status", "valueQuantity.unit", "code.coding[0]",
                                                           "[0]", "referenceRange[1].low", "component[2]"]))
def test_a_place_inside_a_kept_resource_is_the_resources_place_followed_by_the_path(index, path):
    from service.pipeline.ingest import KeptResource

    kept = KeptResource("Observation", {}, index, None)
    assert kept.at(path) == (kept.place.at(path) if path else kept.place)
