"""Unit factors are derived, not tabled: UCUM (the rule engine's) within a dimension, and through each
analyte's molar mass or charge, which analytes.json declares with their source, across dimensions."""

from __future__ import annotations

import ast
import json
import shutil
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import pytest

from service.cql_like.ucum import conversion_factor
from service.terminology import TerminologyDataError, load_terminology, read_terminology
from service.terminology.unit_factors import Bridge, UnitDerivationError, derive_factor
from tests.support.provenance import INTERNAL_NOTES, marks

TERMINOLOGY = load_terminology()
DATA = Path(__file__).resolve().parents[1] / "service" / "terminology"

# Every accepted unit and its factor to the canonical unit as the table held them when factors were
# written by hand: deriving them must neither add nor drop a unit nor move a factor.
FACTORS_BEFORE_DERIVATION = {
    "calcium": {"mg/dL": "1", "mg/L": "0.1", "mmol/L": "4.008"},
    "calcium-ionized": {"mg/dL": "1", "mg/L": "0.1", "mmol/L": "4.0"},
    "calcium-corrected": {"mg/dL": "1", "mmol/L": "4.008"},
    "phosphate": {"mg/dL": "1", "mg/L": "0.1", "mmol/L": "3.097"},
    "pth": {"pg/mL": "1", "ng/L": "1", "pmol/L": "9.425"},
    "vitamin-d-25oh": {"ng/mL": "1", "ug/L": "1", "nmol/L": "0.4006"},
    "vitamin-d3-25oh": {"ng/mL": "1", "ug/L": "1", "nmol/L": "0.4006"},
    "vitamin-d2-25oh": {"ng/mL": "1", "ug/L": "1"},
    "vitamin-d-1-25oh2": {"pg/mL": "1", "ng/L": "1", "pmol/L": "0.4166"},
    "creatinine": {"mg/dL": "1", "mg/L": "0.1", "umol/L": "0.01131", "mmol/L": "11.31"},
    "egfr": {"mL/min/{1.73_m2}": "1", "mL/min": "1"},
    "body-height": {"cm": "1", "mm": "0.1", "m": "100", "[in_i]": "2.54"},
    "albumin": {"g/dL": "1", "g/L": "0.1", "mg/dL": "0.001"},
    "protein-total": {"g/dL": "1", "g/L": "0.1", "mg/dL": "0.001"},
    "bun": {"mg/dL": "1", "mg/L": "0.1", "mmol/L": "2.801"},
    "ck": {"U/L": "1", "mU/mL": "1", "kU/L": "1000"},
    "ldh": {"U/L": "1", "mU/mL": "1", "kU/L": "1000"},
    "ast": {"U/L": "1", "mU/mL": "1", "kU/L": "1000"},
    "alt": {"U/L": "1", "mU/mL": "1", "kU/L": "1000"},
    "aldolase": {"U/L": "1", "mU/mL": "1", "kU/L": "1000"},
    "bicarbonate": {"mmol/L": "1", "meq/L": "1"},
    "co2-total": {"mmol/L": "1", "meq/L": "1"},
    "ph-arterial": {"[pH]": "1"},
    "urine-calcium-24h": {"mg/(24.h)": "1", "mg/d": "1", "mmol/(24.h)": "40.08", "mmol/d": "40.08"},
    "urine-calcium-24h-concentration": {"mg/dL": "1", "mg/L": "0.1", "mmol/L": "4.008"},
    "urine-phosphate-24h": {"mg/(24.h)": "1", "mg/d": "1", "mmol/(24.h)": "30.97", "mmol/d": "30.97",
                            "g/(24.h)": "1000", "g/d": "1000"},
}


def _quantitative():
    return [analyte for analyte in TERMINOLOGY.analytes.values() if analyte.is_quantitative]


def _exact(value: Fraction) -> Decimal:
    with localcontext() as context:
        context.prec = 60
        return Decimal(value.numerator) / Decimal(value.denominator)


def _expected_factor(analyte, unit: str) -> Decimal:
    """The factor worked out independently of the loader: a molar unit is read as the mass of the same
    amount (X mol -> X g, times the molar mass in g/mol); an equivalent as the amount it carries
    (X eq -> X mol, divided by the charge in eq/mol); the rest is UCUM alone."""
    canonical = analyte.canonical_unit
    molar_mass, charge = analyte.bridge("molar mass"), analyte.bridge("charge")
    if molar_mass is not None and "mol" in unit and "mol" not in canonical:
        assert molar_mass.unit == "g/mol"
        return molar_mass.value * _exact(conversion_factor(unit.replace("mol", "g"), canonical))
    if charge is not None and "eq" in unit and "eq" not in canonical:
        assert charge.unit == "eq/mol"
        return _exact(conversion_factor(unit.replace("eq", "mol"), canonical)) / charge.value
    return _exact(conversion_factor(unit, canonical))


def test_every_quantitative_analyte_accepts_the_units_it_accepted_with_the_same_factors():
    table = {analyte.key: {unit: str(row.factor) for unit, row in analyte.units.items()} for analyte in _quantitative()}
    assert table == FACTORS_BEFORE_DERIVATION


@pytest.mark.parametrize("analyte, unit", [(analyte.key, unit) for analyte in _quantitative() for unit in analyte.units])
def test_every_derived_factor_is_ucum_times_the_molar_mass_or_over_the_charge_exactly(analyte, unit):
    definition = TERMINOLOGY.analyte(analyte)
    row = definition.units[unit]
    assert row.derived_factor == _expected_factor(definition, unit)  # exact decimal equality, no tolerance
    if row.convention is None:
        assert row.factor == row.derived_factor
        assert str(row.factor) == str(row.derived_factor)  # same digits too: 4.008, never 4.0080


def test_molar_units_are_derived_through_the_molar_mass_and_say_so():
    calcium = TERMINOLOGY.analyte("calcium").units["mmol/L"]
    assert calcium.derivation == "UCUM mmol/L -> mg/dL x molar mass 40.08 g/mol"
    assert TERMINOLOGY.analyte("bicarbonate").units["meq/L"].derivation == "UCUM meq/L -> mmol/L / charge 1 eq/mol"
    assert TERMINOLOGY.analyte("ck").units["kU/L"].derivation == "UCUM kU/L -> U/L"


def test_ionized_calcium_keeps_the_published_factor_4_as_a_stated_convention():
    row = TERMINOLOGY.analyte("calcium-ionized").units["mmol/L"]
    assert (row.factor, row.derived_factor) == (Decimal("4.0"), Decimal("4.008"))
    assert "reference_ranges.json" in row.convention and "4.008" in row.convention
    # The only convention of the table: every other factor is the derived one.
    conventions = [(a.key, u) for a in _quantitative() for u, r in a.units.items() if r.convention is not None]
    assert conventions == [("calcium-ionized", "mmol/L")]


# Published conversions (SI -> conventional factor, and the conventional -> SI factor as printed, to its
# own digits): LOINC-to-LOINC conversion table of miracum/loinc-conversion, labunits 0.2.1 (BUN).
PUBLISHED = [
    ("calcium", "mmol/L", "4.008", "0.2495"),
    ("calcium-ionized", "mmol/L", "4.0", "0.25"),
    ("phosphate", "mmol/L", "3.097", "0.3229"),
    ("creatinine", "umol/L", "0.01131", "88.4"),
    ("pth", "pmol/L", "9.425", "0.1061"),
    ("vitamin-d-25oh", "nmol/L", "0.4006", "2.496"),
    ("vitamin-d-1-25oh2", "pmol/L", "0.4166", "2.4"),
    ("urine-calcium-24h", "mmol/(24.h)", "40.08", "0.02495"),
    ("urine-phosphate-24h", "mmol/(24.h)", "30.97", "0.03229"),
    ("bun", "mmol/L", "2.801", "0.357"),
    ("albumin", "g/L", "0.1", "10"),
]


@pytest.mark.parametrize("analyte, unit, to_conventional, to_si", PUBLISHED)
def test_factors_agree_with_the_published_conversions_both_ways(analyte, unit, to_conventional, to_si):
    factor = TERMINOLOGY.analyte(analyte).units[unit].factor
    assert factor == Decimal(to_conventional)
    digits = len(Decimal(to_si).as_tuple().digits)
    with localcontext() as context:
        context.prec = digits
        assert +(1 / factor) == Decimal(to_si)


def test_every_molar_mass_and_charge_states_its_mark_and_source():
    for analyte in _quantitative():
        for bridge in analyte.bridges:
            where = (analyte.key, bridge.name, bridge.source)
            assert bridge.mark in {"V", "V2", "U"}, where
            assert bridge.source.startswith(f"{bridge.mark} ("), where
            assert bridge.mark in marks(bridge.source), where
            assert not any(note in bridge.source.lower() for note in INTERNAL_NOTES), where
            assert bridge.value > 0, where


def test_one_molar_mass_per_substance():
    """Total, ionized, corrected and urine calcium are one element: one molar mass."""
    masses = {key: TERMINOLOGY.analyte(key).bridge("molar mass").value
              for key in ("calcium", "calcium-ionized", "calcium-corrected", "urine-calcium-24h",
                          "urine-calcium-24h-concentration")}
    assert set(masses.values()) == {Decimal("40.08")}
    assert TERMINOLOGY.analyte("phosphate").bridge("molar mass") == TERMINOLOGY.analyte("urine-phosphate-24h").bridge("molar mass")


# --- the loader refuses what UCUM cannot derive ------------------------------------------------------

def _copy_tables(tmp_path: Path) -> dict:
    for path in DATA.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    return json.loads((tmp_path / "analytes.json").read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: dict) -> None:
    (tmp_path / "analytes.json").write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize("analyte, unit, reason", [
    ("albumin", "mmol/L", "no molar mass or charge"),  # a molar unit for an analyte without a molar mass
    ("calcium", "meq/L", "molar mass 40.08 g/mol"),  # divalent: no charge declared, so no meq/L
    ("calcium", "mg", "mass"),  # a mass is no concentration
    ("calcium", "furlong", "unknown unit"),
    ("ck", "[iU]/L", "arbitrary"),  # international units are not enzyme units
])
def test_a_unit_ucum_cannot_convert_is_refused_at_load_naming_file_analyte_and_unit(tmp_path, analyte, unit, reason):
    data = _copy_tables(tmp_path)
    data["analytes"][analyte]["units"][unit] = {"mark": "V", "source": "UCUM arithmetic"}
    _write(tmp_path, data)
    with pytest.raises(TerminologyDataError) as raised:
        read_terminology(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"analytes.json: analyte {analyte}: unit '{unit}': UCUM cannot convert")
    assert reason in message


def test_a_written_factor_is_refused_at_load(tmp_path):
    data = _copy_tables(tmp_path)
    data["analytes"]["creatinine"]["units"]["umol/L"]["factor"] = "0.0113"
    _write(tmp_path, data)
    with pytest.raises(TerminologyDataError, match=r"analytes.json: analyte creatinine: unit 'umol/L': factors are derived"):
        read_terminology(tmp_path)


def test_a_convention_far_from_the_derived_factor_is_refused_at_load(tmp_path):
    data = _copy_tables(tmp_path)
    data["analytes"]["calcium-ionized"]["units"]["mmol/L"]["convention"]["factor"] = "4.1"
    _write(tmp_path, data)
    with pytest.raises(TerminologyDataError, match=r"calcium-ionized: unit 'mmol/L': the convention factor 4.1"):
        read_terminology(tmp_path)


@pytest.mark.parametrize("field, value, message", [
    ("unit", "g/mool", "molar mass unit 'g/mool' is not a UCUM unit"),
    ("value", "0", "molar mass 0 must be a positive number"),
    ("value", "NaN", "molar mass NaN must be a positive number"),
])
def test_an_unusable_molar_mass_is_refused_at_load(tmp_path, field, value, message):
    data = _copy_tables(tmp_path)
    data["analytes"]["pth"]["molar_mass"][field] = value
    _write(tmp_path, data)
    with pytest.raises(TerminologyDataError, match=f"analytes.json: analyte pth: {message}"):
        read_terminology(tmp_path)


def test_molar_masses_are_data_the_factors_follow_them(tmp_path):
    data = _copy_tables(tmp_path)
    data["analytes"]["creatinine"]["molar_mass"]["value"] = "100"
    data["analytes"]["bicarbonate"]["charge"]["value"] = "2"
    _write(tmp_path, data)
    changed = read_terminology(tmp_path)
    assert changed.analyte("creatinine").units["umol/L"].factor == Decimal("0.01")
    assert changed.analyte("creatinine").units["mmol/L"].factor == Decimal("10")
    assert changed.analyte("bicarbonate").units["meq/L"].factor == Decimal("0.5")
    assert changed.analyte("calcium").units["mmol/L"].factor == Decimal("4.008")  # untouched analytes keep theirs


def test_no_molar_mass_is_written_in_the_terminology_code():
    masses = {bridge.value for analyte in _quantitative() for bridge in analyte.bridges if bridge.name == "molar mass"}
    for path in DATA.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
                assert Decimal(str(node.value)) not in masses, (path.name, node.lineno, node.value)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Decimal" and node.args:
                argument = node.args[0]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    assert Decimal(argument.value) not in masses, (path.name, node.lineno)


# --- derive_factor on its own ---------------------------------------------------------------------

def _bridge(name: str, value: str, unit: str) -> Bridge:
    return Bridge(name, Decimal(value), unit, "V", "V (test)")


@pytest.mark.parametrize("unit, canonical, bridges, expected", [
    ("mg/L", "mg/dL", (), "0.1"),
    ("g/(24.h)", "mg/d", (), "1000"),
    ("mmol/L", "mg/dL", (_bridge("molar mass", "40.08", "g/mol"),), "4.008"),
    ("mg/dL", "mmol/L", (_bridge("molar mass", "40.08", "g/mol"),), "0.2495009980039920159680638723"),
    ("meq/L", "mmol/L", (_bridge("charge", "2", "eq/mol"),), "0.5"),
    ("mmol/L", "meq/L", (_bridge("charge", "2", "eq/mol"),), "2"),
    ("meq/L", "mmol/L", (_bridge("charge", "3", "eq/mol"),), "0.3333333333333333333333333333"),
])
def test_derive_factor(unit, canonical, bridges, expected):
    derived = derive_factor(unit, canonical, bridges)
    assert str(derived.factor) == expected


def test_derive_factor_names_the_reason_it_fails():
    with pytest.raises(UnitDerivationError, match=r"'mmol/L' to 'mg/dL'.*declare a molar mass.*no molar mass or charge"):
        derive_factor("mmol/L", "mg/dL", ())
