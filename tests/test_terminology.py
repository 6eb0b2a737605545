"""The terminology tables: LOINC -> analyte, unit conversion, default ranges, interpretation codes."""

from __future__ import annotations

import os
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from service.terminology.ages import age_on
from service.terminology import LOINC, UnitConversionError, load_terminology
from tests.support.provenance import INTERNAL_NOTES, marks, provenance_problems

TERMINOLOGY = load_terminology()
SHARED = Path(os.environ.get("CALCINOSIS_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))

# DESIGN.md "Panel codes" (LOINC only; imaging is SNOMED CT and not a lab analyte).
PANEL_CODES = {
    "58410-2": "cbc-panel", "24321-2": "bmp-panel", "17861-6": "calcium", "2777-1": "phosphate",
    "2885-2": "protein-total", "1751-7": "albumin", "2731-8": "pth", "62292-8": "vitamin-d-25oh",
    "6874-2": "urine-calcium-24h", "2779-7": "urine-phosphate-24h", "2157-6": "ck", "2532-0": "ldh",
    "1920-8": "ast", "1742-6": "alt", "1761-6": "aldolase", "8061-4": "ana", "5130-0": "anti-dsdna",
    "43119-7": "ena-panel", "1963-8": "bicarbonate", "2744-1": "ph-arterial",
}


def _close(left: Decimal, right: Decimal, tolerance: str = "0.005") -> bool:
    return abs(left - right) <= abs(right) * Decimal(tolerance)


@pytest.mark.parametrize("code, analyte", sorted(PANEL_CODES.items()))
def test_every_panel_code_maps_to_its_analyte(code, analyte):
    row = TERMINOLOGY.analyte_for(LOINC, code)
    assert row is not None and row.analyte == analyte


@pytest.mark.parametrize("code, analyte, specimen", [
    ("49765-1", "calcium", "blood"), ("2000-8", "calcium", "serum-plasma"),
    ("1994-3", "calcium-ionized", "blood"), ("1995-0", "calcium-ionized", "serum-plasma"),
    ("29265-6", "calcium-corrected", "serum-plasma"), ("14879-1", "phosphate", "serum-plasma"),
    ("14866-8", "pth", "serum-plasma"), ("35365-6", "vitamin-d-25oh", "serum-plasma"),
    ("68438-1", "vitamin-d-25oh", "serum-plasma"), ("1989-3", "vitamin-d3-25oh", "serum-plasma"),
    ("49054-0", "vitamin-d2-25oh", "serum-plasma"), ("38483-4", "creatinine", "blood"),
    ("59826-8", "creatinine", "blood"), ("14682-9", "creatinine", "serum-plasma"),
    ("98979-8", "egfr", "serum-plasma-blood"), ("33914-3", "egfr", "serum-plasma"),
    ("1960-4", "bicarbonate", "arterial-blood"), ("2028-9", "co2-total", "serum-plasma"),
    ("14637-3", "urine-calcium-24h", "urine-24h"), ("65754-4", "skin-pathology", "skin"),
])
def test_related_codes_map_to_analyte_and_specimen(code, analyte, specimen):
    row = TERMINOLOGY.analyte_for(LOINC, code)
    assert row is not None
    assert (row.analyte, row.specimen) == (analyte, specimen)


def test_a_code_from_another_system_is_not_an_analyte():
    assert TERMINOLOGY.analyte_for("http://snomed.info/sct", "17861-6") is None
    assert TERMINOLOGY.analyte_for(LOINC, "29463-7") is None  # body weight: no rule reads it


def test_every_row_keeps_its_verification_mark_and_source():
    for row in TERMINOLOGY.codes:
        assert row.mark in {"V", "V2", "U"}, row.code
        assert row.name_mark in {"V", "V2", "U"}, row.code
        assert row.source.strip(), row.code


def test_every_code_row_states_its_marks_and_the_public_source_it_was_checked_against():
    for row in TERMINOLOGY.codes:
        assert provenance_problems(row.source, {row.system}) == [], row.code
        assert {row.mark, row.name_mark} <= marks(row.source), (row.code, row.source)


# Where a conversion factor comes from: a public conversion table or terminology, or exact arithmetic
# (a monovalent ion's milliequivalent is its millimole).
FACTOR_BASES = ("UCUM", "exact", "miracum/loinc-conversion", "labunits", "LOINC", "1 mEq/L = 1 mmol/L")


def test_every_unit_factor_names_its_basis_and_no_internal_note():
    for analyte in TERMINOLOGY.analytes.values():
        for unit in analyte.units.values():
            assert any(basis in unit.source for basis in FACTOR_BASES), (analyte.key, unit.unit, unit.source)
            assert not any(note in unit.source.lower() for note in INTERNAL_NOTES), (analyte.key, unit.unit)


@pytest.mark.parametrize("analyte, unit, mark, source", [
    ("calcium", "mmol/L", "V", "miracum/loinc-conversion: 17861-6->2000-8 0.2495"),
    ("phosphate", "mmol/L", "V", "miracum/loinc-conversion: 14879-1->2777-1"),
    ("pth", "pmol/L", "V", "miracum/loinc-conversion: 14866-8->2731-8"),
    ("creatinine", "umol/L", "V", "miracum/loinc-conversion"),
    ("bun", "mmol/L", "V2", "labunits"),
    ("vitamin-d-1-25oh2", "pmol/L", "V", "labunits"),
])
def test_a_factor_verified_against_a_conversion_table_says_which_one_with_its_mark(analyte, unit, mark, source):
    factor = TERMINOLOGY.analyte(analyte).units[unit]
    assert factor.mark == mark and factor.source.startswith(f"{mark} (")
    assert source in factor.source


def test_every_default_range_states_its_mark_and_a_source_or_that_none_was_read():
    publications = ("Davis's Lab & Diagnostic Tests", "ARUP Laboratories")
    for key in TERMINOLOGY.analytes:
        for band in TERMINOLOGY.default_ranges(key):
            where = (key, band.label, band.source)
            assert not any(note in band.source.lower() for note in INTERNAL_NOTES), where
            if band.mark == "U":
                assert "U" in marks(band.source), where
                assert "not verified" in band.source or "no source read" in band.source, where
            else:
                assert band.source.startswith(f"{band.mark} (") or any(p in band.source for p in publications), where


@pytest.mark.parametrize("code, mark, name_mark", [
    ("17863-2", "V2", "V2"), ("68438-1", "V", "U"), ("61151-7", "V", "U"), ("61152-5", "V", "U"),
    ("14937-7", "V", "U"), ("43119-7", "V2", "V2"), ("17861-6", "V", "V"),
])
def test_marks_follow_codes_md(code, mark, name_mark):
    row = TERMINOLOGY.analyte_for(LOINC, code)
    assert (row.mark, row.name_mark) == (mark, name_mark)


def test_every_loinc_code_of_the_table_appears_in_codes_md():
    codes_md = SHARED / "clinical" / "codes.md"
    if not codes_md.is_file():
        pytest.skip(f"background material not found at {codes_md} (set CALCINOSIS_SHARED_DIR)")
    text = codes_md.read_text(encoding="utf-8")
    listed = set(re.findall(r"\b\d{3,6}-\d\b", text))
    # A code codes.md does not list is marked U and matched by name as well (8302-2 body height).
    missing = sorted(row.code for row in TERMINOLOGY.codes if row.code not in listed and not row.match_names)
    assert missing == []
    assert all(row.mark == "U" for row in TERMINOLOGY.codes if row.code not in listed)


# codes.md section B: one conventional and one SI value of the same sample.
CONVERSION_ROWS = [
    ("calcium", "10", "mg/dL", "2.495", "mmol/L"),
    ("calcium-ionized", "5.0", "mg/dL", "1.25", "mmol/L"),
    ("phosphate", "4.0", "mg/dL", "1.2916", "mmol/L"),
    ("creatinine", "1.0", "mg/dL", "88.4", "umol/L"),
    ("pth", "50", "pg/mL", "5.305", "pmol/L"),
    ("pth", "50", "pg/mL", "50", "ng/L"),
    ("vitamin-d-25oh", "30", "ng/mL", "74.88", "nmol/L"),
    ("vitamin-d3-25oh", "30", "ng/mL", "74.88", "nmol/L"),
    ("vitamin-d-1-25oh2", "40", "pg/mL", "96", "pmol/L"),
    ("albumin", "4.0", "g/dL", "40", "g/L"),
    ("urine-calcium-24h", "200", "mg/(24.h)", "4.99", "mmol/(24.h)"),
    ("bun", "14", "mg/dL", "4.998", "mmol/L"),
    ("egfr", "45", "mL/min/{1.73_m2}", "45", "mL/min/{1.73_m2}"),
]


@pytest.mark.parametrize("analyte, conventional, conventional_unit, si, si_unit", CONVERSION_ROWS)
def test_conventional_and_si_values_give_the_same_canonical_value(analyte, conventional, conventional_unit,
                                                                  si, si_unit):
    from_conventional = TERMINOLOGY.convert(analyte, Decimal(conventional), conventional_unit)
    from_si = TERMINOLOGY.convert(analyte, Decimal(si), si_unit)
    assert _close(from_si, from_conventional)


@pytest.mark.parametrize("analyte, value, unit, expected", [
    ("calcium", "2.5", "mmol/L", "10.02"),
    ("creatinine", "100", "umol/L", "1.131"),
    ("pth", "10", "pmol/L", "94.25"),
    ("vitamin-d-25oh", "50", "nmol/L", "20.03"),
    ("urine-calcium-24h", "5", "mmol/(24.h)", "200.4"),
    ("calcium", "95", "mg/L", "9.5"),
    ("albumin", "35", "g/L", "3.5"),
])
def test_factors_are_the_codes_md_factors(analyte, value, unit, expected):
    assert TERMINOLOGY.convert(analyte, Decimal(value), unit) == Decimal(expected)


@pytest.mark.parametrize("analyte, spelling, expected", [
    ("calcium", "mg/dl", "9.1"),
    ("creatinine", "µmol/L", "1.0179"),
    ("creatinine", "umol/l", "1.0179"),
    ("creatinine", " umol/L ", "1.0179"),
    ("ck", "IU/L", "9.1"),
    ("bicarbonate", "mEq/L", "9.1"),
    ("egfr", "mL/min/1.73m2", "9.1"),
    ("egfr", "mL/min/{1.73m2}", "9.1"),
    ("egfr", "mL/min/1.73_m2", "9.1"),
    ("egfr", "mL/min/1.73 sq.m", "9.1"),
    ("egfr", "mL/min", "9.1"),  # read per 1.73 m2, with a note (see test_bare_ml_per_min_is_read_for_egfr_only)
])
def test_common_unit_spellings_are_understood(analyte, spelling, expected):
    value = Decimal("9.1") if analyte != "creatinine" else Decimal("90")
    assert TERMINOLOGY.convert(analyte, value, spelling) == Decimal(expected)


@pytest.mark.parametrize("analyte, unit", [
    ("calcium", "mEq/L"),  # divalent: mEq/L is not mmol/L
    ("calcium", "mg"),
    ("calcium", "furlong"),
    ("calcium", None),
    ("phosphate", "g/dL/h"),
    ("creatinine", "mL/min"),  # a clearance unit: never a creatinine concentration
])
def test_units_without_an_exact_conversion_are_refused(analyte, unit):
    with pytest.raises(UnitConversionError):
        TERMINOLOGY.convert(analyte, Decimal("1"), unit)


def test_bare_ml_per_min_is_read_for_egfr_only_and_carries_a_note():
    egfr = TERMINOLOGY.analyte("egfr")
    assert TERMINOLOGY.unit_factor(egfr, "mL/min").note == (
        "read as mL/min/1.73 m2 (an estimated GFR is normalised to 1.73 m2 of body surface area)")
    assert TERMINOLOGY.unit_factor(egfr, "mL/min/1.73m2").note is None
    for key, analyte in TERMINOLOGY.analytes.items():
        if key != "egfr" and analyte.is_quantitative:
            assert TERMINOLOGY.unit_factor(analyte, "mL/min") is None, key


def test_a_missing_unit_means_ph_only_for_ph():
    assert TERMINOLOGY.convert("ph-arterial", Decimal("7.41"), None) == Decimal("7.41")


def test_qualitative_analytes_have_no_conversion():
    with pytest.raises(UnitConversionError):
        TERMINOLOGY.convert("ana", Decimal("1"), "1")


def test_childs_phosphate_band_differs_from_adults():
    from datetime import date
    child = TERMINOLOGY.default_range("phosphate", age_on(date(2018, 3, 1), date(2026, 3, 1)))
    adult = TERMINOLOGY.default_range("phosphate", age_on(date(1980, 3, 1), date(2026, 3, 1)))
    assert (child.low, child.high, child.source_label) == (Decimal("3.7"), Decimal("5.8"),
                                                           "default child 1-12 y (unverified)")
    assert (adult.low, adult.high, adult.source_label) == (Decimal("2.5"), Decimal("4.5"),
                                                           "default adult (unverified)")


@pytest.mark.parametrize("birth, on, label", [
    ("2026-03-01", "2026-03-10", "newborn 0-27 d"),
    ("2026-01-01", "2026-03-10", "infant 28 d-11 m"),
    ("2025-03-11", "2026-03-10", "infant 28 d-11 m"),
    ("2025-03-10", "2026-03-10", "child 1-12 y"),
    ("2013-03-10", "2026-03-10", "adolescent 13-17 y"),
    ("2008-03-11", "2026-03-10", "adolescent 13-17 y"),
    ("2008-03-10", "2026-03-10", "adult"),
])
def test_phosphate_band_edges(birth, on, label):
    from datetime import date
    band = TERMINOLOGY.default_range("phosphate", age_on(date.fromisoformat(birth), date.fromisoformat(on)))
    assert band.label == label


def test_verified_marks_show_no_caveat():
    band = TERMINOLOGY.default_range("calcium", age_on(date(1980, 3, 1), date(2026, 3, 1)))
    assert (band.low, band.high, band.mark, band.source_label) == (Decimal("8.5"), Decimal("10.2"), "V2",
                                                                   "default adult")


@pytest.mark.parametrize("analyte, low, high", [
    ("phosphate", Decimal("2.5"), Decimal("8.2")),  # adult low, newborn high
    ("calcium", Decimal("8.5"), Decimal("10.8")),  # adult low, child high
    ("calcium-corrected", Decimal("8.5"), Decimal("10.8")),
])
def test_unknown_age_spans_every_age_band_when_the_bands_differ(analyte, low, high):
    band = TERMINOLOGY.default_range(analyte, None)
    assert (band.low, band.high) == (low, high)
    assert band.spans_every_age_band
    assert band.source_label == "default (age unknown): flagged only outside every age band"


@pytest.mark.parametrize("analyte, label", [("vitamin-d-25oh", "any age")])
def test_unknown_age_keeps_a_default_that_is_the_same_for_every_age(analyte, label):
    band = TERMINOLOGY.default_range(analyte, None)
    assert band.label == label
    assert not band.spans_every_age_band


@pytest.mark.parametrize("analyte, low, high", [
    # children's bands (cited in the table) differ from the adult one: an unknown age spans them all
    ("pth", Decimal("7"), Decimal("68")),
    ("creatinine", Decimal("0.31"), Decimal("1.3")),
    ("albumin", Decimal("2"), Decimal("5.6")),
    ("calcium-ionized", Decimal("4.40"), Decimal("5.40")),
])
def test_unknown_age_spans_the_childrens_and_the_adult_bands(analyte, low, high):
    band = TERMINOLOGY.default_range(analyte, None)
    assert (band.low, band.high, band.spans_every_age_band) == (low, high, True)


@pytest.mark.parametrize("birth, on, analyte, label", [
    ("2020-01-01", "2026-01-01", "creatinine", "child 6-10 y"),
    ("2011-01-01", "2026-01-01", "pth", "adolescent 11-17 y"),
    ("2026-01-01", "2026-01-20", "pth", "infant under 1 m"),
    ("2025-06-01", "2026-01-01", "albumin", "infant 7-11 m"),
    ("2025-12-01", "2026-01-01", "calcium-ionized", "child 1 m-17 y"),
])
def test_childrens_bands_cover_their_ages(birth, on, analyte, label):
    band = TERMINOLOGY.default_range(analyte, age_on(date.fromisoformat(birth), date.fromisoformat(on)))
    assert band.label == label


def test_analytes_without_a_known_default_have_none():
    assert TERMINOLOGY.default_range("egfr", None) is None
    from datetime import date
    # the cited source gives no creatinine band from 11 to 17 years: no band of another age is borrowed
    assert TERMINOLOGY.default_range("creatinine", age_on(date(2011, 1, 1), date(2026, 1, 1))) is None
    assert TERMINOLOGY.default_range("creatinine", age_on(date(2025, 6, 1), date(2026, 1, 1))) is None


def test_vitamin_d_default_is_one_sided():
    band = TERMINOLOGY.default_range("vitamin-d-25oh", None)
    assert band.low == Decimal("20") and band.high is None


@pytest.mark.parametrize("system, code, expected", [
    ("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "H", "H"),
    ("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "h", "H"),
    ("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "POS", "POS"),
    ("http://hl7.org/fhir/v2/0078", "LL", "LL"),
    (None, "N", "N"),
    ("http://example.org/local-flags", "H", None),
    ("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "HIGH", None),
])
def test_interpretation_codes(system, code, expected):
    assert TERMINOLOGY.interpretation_code(system, code) == expected


def test_tables_are_loaded_once():
    assert load_terminology() is load_terminology()


def test_a_malformed_table_directory_is_reported_as_a_data_error(tmp_path):
    from service.terminology import TerminologyDataError
    (tmp_path / "analytes.json").write_text('{"analytes": {}, "codes": [{"code": "1"}]}', encoding="utf-8")
    with pytest.raises(TerminologyDataError):
        load_terminology(tmp_path)


# --- converted measurements and reference range restrictions ------------------------------------------

@pytest.mark.parametrize("analyte, value, unit, expected", [
    ("calcium", "2.55", "mmol/L", "10.2"),
    ("calcium", "2.12", "mmol/L", "8.50"),
    ("calcium", "2.5", "mmol/L", "10.0"),  # two digits sent: still three kept
    ("calcium", "2.3745", "mmol/L", "9.517"),  # five digits sent: five kept
    ("creatinine", "120", "umol/L", "1.36"),
    ("calcium", "1000", "mmol/L", "4008"),
    ("calcium", "10000", "mmol/L", "40080"),  # written out, not 4.0080E+4
])
def test_a_converted_measurement_keeps_the_precision_it_was_sent_with(analyte, value, unit, expected):
    converted = TERMINOLOGY.convert_measurement(analyte, Decimal(value), unit)
    assert converted == Decimal(expected)
    assert "E" not in str(converted)


@pytest.mark.parametrize("analyte, value, unit", [
    ("calcium", "9.123456", "mg/dL"), ("pth", "70.25", "ng/L"), ("bicarbonate", "24.123", "meq/L")])
def test_a_measurement_in_a_unit_with_factor_one_is_not_rounded(analyte, value, unit):
    assert TERMINOLOGY.convert_measurement(analyte, Decimal(value), unit) == Decimal(value)


@pytest.mark.parametrize("concept, sex", [
    ({"coding": [{"system": "http://snomed.info/sct", "code": "248153007"}]}, "male"),
    ({"coding": [{"system": "http://snomed.info/sct", "code": "248152002"}]}, "female"),
    ({"coding": [{"system": "http://hl7.org/fhir/administrative-gender", "code": "female"}]}, "female"),
    ({"text": " Male "}, "male"),
    ({"coding": [{"system": "http://snomed.info/sct", "code": "77386006"}]}, None),  # pregnancy
    ({"coding": [{"system": "http://example.org", "code": "248153007"}]}, None),
    ({"text": "adult men"}, None),
    ("male", None),
])
def test_range_restrictions_naming_a_sex_are_recognised(concept, sex):
    assert TERMINOLOGY.sex_of_range_concept(concept) == sex


@pytest.mark.parametrize("unit, meaning", [("a", "years"), ("mo", "months"), ("wk", "weeks"), ("d", "days"),
                                           ("years", None), ("h", None), (None, None)])
def test_age_units_of_reference_ranges(unit, meaning):
    assert TERMINOLOGY.age_unit(unit) == meaning


# --- code systems -------------------------------------------------------------------------------------

def test_the_loinc_oid_is_an_alias_of_loinc_and_finds_the_same_analyte():
    assert TERMINOLOGY.system_alias("urn:oid:2.16.840.1.113883.6.1") == (LOINC, "LOINC")
    assert TERMINOLOGY.analyte_for("urn:oid:2.16.840.1.113883.6.1", "17861-6").analyte == "calcium"


def test_loinc_and_snomed_are_recognised_systems_and_a_local_system_is_not():
    assert TERMINOLOGY.is_recognised_system(LOINC)
    assert TERMINOLOGY.is_recognised_system("http://snomed.info/sct")
    assert TERMINOLOGY.is_recognised_system("urn:oid:2.16.840.1.113883.6.1")
    assert not TERMINOLOGY.is_recognised_system("http://lab.example.org/codes")
    assert TERMINOLOGY.system_alias(LOINC) is None


def test_the_vitamin_d_default_band_has_no_upper_limit():
    band = TERMINOLOGY.default_range("vitamin-d-25oh", None)
    assert band is not None and band.low == Decimal("20") and band.high is None
