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


# --- remembered instants are the plain text ----------------------------------------------------------

from datetime import datetime as _datetime, timedelta as _timedelta, timezone as _timezone  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from hypothesis import given as _given, settings as _settings  # noqa: E402
from hypothesis import strategies as _st  # noqa: E402

from service.fhir_outputs.ids import fhir_instant as _fhir_instant  # noqa: E402


def _plain_instant(moment: _datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(_timezone.utc)
    return moment.replace(tzinfo=None).isoformat() + "Z"


_ZONES = _st.sampled_from([None, _timezone.utc, _timezone(_timedelta(hours=5, minutes=30)), _timezone(-_timedelta(hours=8)),
                           ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin")])


@_settings(max_examples=300, deadline=None)
@_given(moment=_st.datetimes(min_value=_datetime(1950, 1, 1), max_value=_datetime(2100, 1, 1), timezones=_ZONES,
                             allow_imaginary=False),
        fold=_st.sampled_from([0, 1]))
def test_an_instant_is_written_as_its_plain_utc_text_each_time(moment, fold):
    moment = moment.replace(fold=fold)
    assert _fhir_instant(moment) == _plain_instant(moment)
    assert _fhir_instant(moment) == _plain_instant(moment)


def test_an_hour_that_occurs_twice_is_written_for_each_of_its_readings():
    zone = ZoneInfo("America/New_York")
    first, second = (_datetime(2025, 11, 2, 1, 30, tzinfo=zone, fold=fold) for fold in (0, 1))
    assert first == second  # the same zone compares wall times
    assert (_fhir_instant(first), _fhir_instant(second)) == ("2025-11-02T05:30:00Z", "2025-11-02T06:30:00Z")


@_settings(max_examples=400, deadline=None)
@_given(parts=_st.lists(_st.text(max_size=20), max_size=6))
def test_a_stable_id_is_the_uuid5_of_its_parts(parts):
    import uuid

    from service.fhir_outputs.ids import ID_NAMESPACE, stable_id

    assert stable_id(*parts) == str(uuid.uuid5(ID_NAMESPACE, "\x1f".join(parts)))
