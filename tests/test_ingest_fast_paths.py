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
        entry = reader._entry(position, raw)
        if entry is not None:
            reader.entries[position] = entry
    return reader


def test_a_remembered_resolution_is_the_index_lookup_from_the_referrers_base():
    reader = _reader()
    for _ in range(2):  # the second round answers from what was remembered
        for reference, full_url in itertools.product(REFERENCES, FULL_URLS):
            assert reader._lookup(reference, full_url) == reader.index.lookup(reference, server_base(full_url))
    assert reader._lookup("Patient/p1", None).ambiguous
