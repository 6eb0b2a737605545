"""Checks that the $assess fixtures are valid FHIR and really exercise what they claim.

Part of the default test run; on their own: python -m pytest fhir_fixtures/assess/tools -q
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import pytest

TOOLS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS_DIR))

from build_fixtures import build  # noqa: E402
from expectations import NOW  # noqa: E402
from validate_fixtures import input_fixtures, validate_bundle, validate_manifest  # noqa: E402

FIXTURE_DIR = TOOLS_DIR.parent
FIXTURE_FILES = input_fixtures()
LOOKBACK_START = datetime.fromisoformat("2025-11-15T09:00:00+00:00")
NOW_INSTANT = datetime.fromisoformat(NOW.replace("Z", "+00:00"))

# SI -> conventional factors, as verified against the LOINC-to-LOINC conversion table of
# miracum/loinc-conversion (the factors the terminology derives from service/terminology/analytes.json).
TO_CONVENTIONAL = {
    "2000-8": ("17861-6", 4.008),
    "14879-1": ("2777-1", 3.097),
    "14866-8": ("2731-8", 9.425),
    "14682-9": ("2160-0", 0.01131),
    "14635-7": ("62292-8", 0.4006),
}


def _load(name_prefix: str) -> dict:
    path = next(p for p in FIXTURE_FILES if p.name.startswith(name_prefix))
    return json.loads(path.read_text(encoding="utf-8"))


def _resources(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _loinc(obs: dict) -> str:
    return next(c["code"] for c in obs["code"]["coding"] if c["system"] == "http://loinc.org")


def _values_by_code(bundle: dict) -> dict[str, float]:
    return {_loinc(o): o["valueQuantity"]["value"] for o in _resources(bundle, "Observation") if "valueQuantity" in o}


def _when(obs: dict) -> datetime:
    return datetime.fromisoformat(obs["effectiveDateTime"].replace("Z", "+00:00"))


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_fixture_bundle_is_valid_fhir_r4_with_resolvable_references(path: Path) -> None:
    assert validate_bundle(path) == []


def test_manifest_lists_every_fixture_and_its_patients() -> None:
    assert len(FIXTURE_FILES) >= 18
    assert validate_manifest() == []


def test_regenerating_the_fixtures_reproduces_the_files_byte_for_byte(tmp_path: Path) -> None:
    build(tmp_path)
    for name in [p.name for p in FIXTURE_FILES] + ["MANIFEST.json", "README.md"]:
        assert (tmp_path / name).read_bytes() == (FIXTURE_DIR / name).read_bytes(), name


@pytest.mark.parametrize("conventional, si", [("01-", "02-"), ("04-", "05-")])
def test_si_fixture_converts_back_to_the_conventional_values(conventional: str, si: str) -> None:
    reference = _values_by_code(_load(conventional))
    converted = _values_by_code(_load(si))
    checked = 0
    for si_code, (conv_code, factor) in TO_CONVENTIONAL.items():
        if si_code in converted:
            assert converted[si_code] * factor == pytest.approx(reference[conv_code], rel=0.01), si_code
            checked += 1
    assert converted["1751-7"] / 10 == pytest.approx(reference["1751-7"])
    assert checked == 5


@pytest.mark.parametrize(
    "prefix, above_70",
    [("04-", True), ("07-", False), ("06-", False), ("17-", False)],
)
def test_calcium_phosphate_product_is_on_the_side_of_70_the_scenario_needs(prefix: str, above_70: bool) -> None:
    values = _values_by_code(_load(prefix))
    assert (values["17861-6"] * values["2777-1"] > 70) is above_70


def test_si_esrd_fixture_keeps_the_product_above_70_after_conversion() -> None:
    values = _values_by_code(_load("05-"))
    assert values["2000-8"] * 4.008 * values["14879-1"] * 3.097 > 70


def test_entered_in_error_calcium_is_the_most_recent_so_a_naive_latest_would_pick_it() -> None:
    calcium = [o for o in _resources(_load("11-"), "Observation") if _loinc(o) == "17861-6"]
    latest = max(calcium, key=_when)
    assert latest["status"] == "entered-in-error"
    assert any(o["status"] == "final" for o in calcium)


def test_high_phosphate_is_older_than_the_normal_one_in_the_stale_fixture() -> None:
    phosphate = sorted((o for o in _resources(_load("12-"), "Observation") if _loinc(o) == "2777-1"), key=_when)
    assert [o["valueQuantity"]["value"] for o in phosphate] == [7.9, 3.8]


@pytest.mark.parametrize("prefix", ["03-", "09-"])
def test_child_phosphate_has_no_lab_range_and_is_above_the_adult_upper_limit(prefix: str) -> None:
    phosphate = next(o for o in _resources(_load(prefix), "Observation") if _loinc(o) == "2777-1")
    assert "referenceRange" not in phosphate and "interpretation" not in phosphate
    assert phosphate["valueQuantity"]["value"] > 4.5


def test_lab_range_fixture_calcium_is_high_on_the_default_range_but_normal_on_the_lab_range() -> None:
    calcium = next(o for o in _resources(_load("20-"), "Observation") if _loinc(o) == "17861-6")
    value = calcium["valueQuantity"]["value"]
    lab_range = calcium["referenceRange"][0]
    assert value > 10.2
    assert lab_range["low"]["value"] <= value <= lab_range["high"]["value"]
    assert calcium["interpretation"][0]["coding"][0]["code"] == "N"


def test_only_the_padded_fixture_has_results_older_than_the_lookback_and_none_is_in_the_future() -> None:
    for path in FIXTURE_FILES:
        bundle = json.loads(path.read_text(encoding="utf-8"))
        for obs in _resources(bundle, "Observation"):
            assert _when(obs) <= NOW_INSTANT, (path.name, obs["id"])
            if _when(obs) < LOOKBACK_START:
                assert path.name.startswith("16-"), (path.name, obs["id"])


def test_some_but_not_all_lab_results_carry_a_reference_range() -> None:
    labs = [
        o
        for p in FIXTURE_FILES
        for o in _resources(json.loads(p.read_text(encoding="utf-8")), "Observation")
        if o["category"][0]["coding"][0]["code"] == "laboratory" and "valueQuantity" in o
    ]
    with_range = sum(1 for o in labs if "referenceRange" in o)
    assert 0 < with_range < len(labs)


RISK_ORDER = {"negligible": 0, "low": 1, "moderate": 2, "high": 3}


def _manifest_patients() -> list[tuple[str, dict]]:
    manifest = json.loads((FIXTURE_DIR / "MANIFEST.json").read_text(encoding="utf-8"))
    return [(f["file"], p["expect"]) for f in manifest["fixtures"] for p in f["patients"]]


@pytest.mark.parametrize("file, expect", _manifest_patients(), ids=lambda v: v if isinstance(v, str) else "")
def test_expected_leading_type_is_graded_at_least_as_high_as_every_other_stated_type(file: str, expect: dict) -> None:
    risks = {t: [RISK_ORDER[level] for level in spec.split("|")] for t, spec in expect.get("risk", {}).items()}
    for levels in risks.values():
        assert levels, file
    leading = expect.get("leading")
    if leading is None:
        return
    assert leading in risks, f"{file}: the leading type has no stated risk"
    lowest_for_leading = min(risks[leading])
    for other, levels in risks.items():
        if other != leading:
            assert max(levels) <= lowest_for_leading, f"{file}: {other} could outrank {leading}"


def _periods(node: object):
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("Period") or key == "period":
                if isinstance(value, dict) and "start" in value and "end" in value:
                    yield value
            yield from _periods(value)
    elif isinstance(node, list):
        for item in node:
            yield from _periods(item)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_every_period_ends_after_it_starts(path: Path) -> None:
    for period in _periods(json.loads(path.read_text(encoding="utf-8"))):
        assert period["start"] <= period["end"], (path.name, period)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_every_result_is_issued_no_earlier_than_it_was_collected(path: Path) -> None:
    for obs in _resources(json.loads(path.read_text(encoding="utf-8")), "Observation"):
        issued = datetime.fromisoformat(obs["issued"].replace("Z", "+00:00"))
        assert issued >= _when(obs), (path.name, obs["id"])
