"""Deterministic ids: same input, same Bundle (goldens compare); new evaluation time, new ids."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime, timedelta, timezone

from service.fhir_outputs import build_result_bundle
from service.fhir_outputs.ids import fhir_instant
from test_outputs_scenarios import ALL_SCENARIOS, BUNDLE_ISSUES, metastatic_high


def ids_of(bundle):
    return [entry["resource"]["id"] for entry in bundle["entry"]]


def test_the_same_input_twice_gives_an_identical_bundle():
    first = build_result_bundle([scenario() for scenario in ALL_SCENARIOS], BUNDLE_ISSUES)
    second = build_result_bundle([scenario() for scenario in ALL_SCENARIOS], BUNDLE_ISSUES)
    assert first == second
    assert json.dumps(first) == json.dumps(second)  # key order too: serialised goldens compare byte for byte


def test_a_new_evaluation_time_gives_new_ids_for_every_resource():
    before = build_result_bundle([metastatic_high()], [])
    later = dataclasses.replace(metastatic_high(), assessed_at=metastatic_high().assessed_at + timedelta(minutes=1))
    after = build_result_bundle([later], [])
    assert set(ids_of(before)).isdisjoint(ids_of(after))
    assert before["id"] != after["id"]


def test_a_new_rule_library_version_gives_new_ids():
    other = dataclasses.replace(metastatic_high(), library_version="1.0.1")
    assert set(ids_of(build_result_bundle([metastatic_high()], []))).isdisjoint(
        ids_of(build_result_bundle([other], [])))


def test_ids_are_uuids_unique_across_patients_and_full_urls_are_their_urns():
    bundle = build_result_bundle([scenario() for scenario in ALL_SCENARIOS], BUNDLE_ISSUES)
    ids = ids_of(bundle)
    assert len(ids) == len(set(ids))
    for entry in bundle["entry"]:
        assert uuid.UUID(entry["resource"]["id"]).version == 5
        assert entry["fullUrl"] == f"urn:uuid:{entry['resource']['id']}"


def test_the_same_instant_in_another_offset_gives_the_same_ids():
    shifted = dataclasses.replace(metastatic_high(), assessed_at=metastatic_high().assessed_at.astimezone(
        timezone(timedelta(hours=-5))))
    assert ids_of(build_result_bundle([shifted], [])) == ids_of(build_result_bundle([metastatic_high()], []))


def test_fhir_instant_writes_utc_with_z_and_keeps_fractions():
    assert fhir_instant(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))) == "2026-01-02T01:04:05Z"
    assert fhir_instant(datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=timezone.utc)) == "2026-01-02T03:04:05.250000Z"
