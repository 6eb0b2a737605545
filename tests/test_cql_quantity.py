"""UCUM units and CQL Quantity arithmetic used by the rule engine."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from service.cql_like import quantity as quantity_module
from service.cql_like import ucum
from service.cql_like.quantity import (
    IncompatibleUnitsError,
    Quantity,
    UnitError,
    UnknownUnitError,
    is_valid_unit,
    parse_unit,
    round_to_cql_decimal,
)
from service.cql_like.ucum import (
    conversion_factor,
    describe_dimension,
    dimension_symbols,
    divide_units,
    multiply_units,
    units_compatible,
)

CODES_MD = Path(__file__).resolve().parents[1].parent / "shared" / "clinical" / "codes.md"


def q(value: str | int, unit: str = "1") -> Quantity:
    return Quantity(Decimal(str(value)), unit)


# --------------------------------------------------------------------------- parsing

LAB_UNITS_AND_KINDS = [
    ("mg/dL", "mass concentration"),
    ("mg/L", "mass concentration"),
    ("g/dL", "mass concentration"),
    ("g/L", "mass concentration"),
    ("pg/mL", "mass concentration"),
    ("ng/L", "mass concentration"),
    ("ng/mL", "mass concentration"),
    ("mmol/L", "amount-of-substance concentration"),
    ("umol/L", "amount-of-substance concentration"),
    ("nmol/L", "amount-of-substance concentration"),
    ("pmol/L", "amount-of-substance concentration"),
    ("U/L", "catalytic activity concentration"),
    ("mU/mL", "catalytic activity concentration"),
    ("mL/min/{1.73_m2}", "volume rate"),
    ("mg/(24.h)", "mass rate"),
    ("mmol/(24.h)", "amount-of-substance rate (catalytic activity)"),
    ("10*3/uL", "number concentration"),
    ("10*6/uL", "number concentration"),
    ("%", "dimensionless"),
    ("{titer}", "dimensionless"),
    ("{score}", "dimensionless"),
    ("mm[Hg]", "pressure"),
    ("kg/m2", "mass per area"),
    ("fL", "volume"),
    ("Cel", "temperature"),
]


@pytest.mark.parametrize("text,kind", LAB_UNITS_AND_KINDS)
def test_lab_units_parse_with_their_kind_of_quantity(text, kind):
    unit = parse_unit(text)
    assert unit.text == text
    assert describe_dimension(unit) == kind


@pytest.mark.parametrize("text", ["[IU]/mL", "[arb'U]/mL", "[pH]", "m[IU]/mL", "[iU]/L"])
def test_arbitrary_lab_units_parse_as_arbitrary(text):
    unit = parse_unit(text)
    assert unit.is_arbitrary
    assert is_valid_unit(text)


def test_ucum_units_listed_in_the_code_reference_all_parse():
    if not CODES_MD.is_file():
        pytest.skip(f"background code reference not present at {CODES_MD}")
    text = CODES_MD.read_text(encoding="utf-8")
    lab_and_unit_sections = text.split("## A.")[1].split("## C.")[0]
    candidates = set(re.findall(r"`([^`\s]+)`", lab_and_unit_sections)) - {"Observation.referenceRange"}
    assert {"mg/dL", "mmol/L", "mL/min/{1.73_m2}", "mg/(24.h)"} <= candidates
    invalid = sorted(u for u in candidates if not is_valid_unit(u))
    assert invalid == []


def test_every_unit_defined_in_the_data_table_parses():
    data = json.loads(ucum.UNIT_TABLE_PATH.read_text(encoding="utf-8"))
    symbols = ([b["symbol"] for b in data["base_units"]] + list(data["derived_units"])
               + list(data["special_units"]) + list(data["arbitrary_units"]))
    for symbol in symbols:
        assert parse_unit(symbol).text == symbol
    assert len(dimension_symbols()) == len(data["base_units"]) + len(data["arbitrary_units"])


def test_parsed_units_are_cached_hashable_and_immutable():
    first = parse_unit("mg/dL")
    assert parse_unit("mg/dL") is first
    assert {first: "ok"}[parse_unit("mg/dL")] == "ok"
    with pytest.raises(AttributeError):
        first.text = "g/L"  # type: ignore[misc]


def test_unit_factor_is_relative_to_base_units_of_its_dimension():
    assert parse_unit("mg/dL").factor == Decimal(10)  # 10 g per cubic meter
    assert parse_unit("a").factor == Decimal(31557600)
    assert parse_unit("L").factor == Decimal("0.001")
    assert parse_unit("U").factor == parse_unit("umol/min").factor


def test_exact_symbols_win_over_prefix_readings():
    assert describe_dimension("mo") == "time"  # month, not a prefixed unit
    assert describe_dimension("min") == "time"
    assert describe_dimension("Pa") == "pressure"  # pascal, not peta-year
    assert describe_dimension("a") == "time"  # year, not the atto prefix
    assert describe_dimension("ag") == "mass"  # attogram


def test_prefixes_only_apply_to_metric_units():
    assert is_valid_unit("m[IU]/mL")
    assert is_valid_unit("kU/L")
    assert not is_valid_unit("kmin")
    assert not is_valid_unit("m[arb'U]")
    assert not is_valid_unit("k%")


def test_lower_and_upper_case_liter_are_the_same_unit():
    assert conversion_factor("mL", "ml") == 1
    assert conversion_factor("dL", "dl") == 1


def test_exponents_parentheses_and_leading_slash():
    assert conversion_factor("cm3", "mL") == 1
    assert conversion_factor("/min", "min-1") == 1
    assert conversion_factor("s-1", "Hz") == 1
    assert conversion_factor("dL2", "L2") == Fraction(1, 100)
    assert conversion_factor("mg/(24.h)", "mg/d") == 1
    assert conversion_factor("10*3/uL", "10^3/uL") == 1
    assert conversion_factor("10*9/L", "10*3/uL") == 1
    assert conversion_factor("10*-3", "1") == Fraction(1, 1000)


def test_ucum_division_is_left_associative():
    # 'mL/min/{1.73_m2}' is (mL/min)/{1.73_m2}, and 'g/m.s' is (g/m).s
    assert parse_unit("g/m.s").dimension == parse_unit("g.s/m").dimension


def test_annotations_are_dimensionless_and_may_be_attached():
    assert conversion_factor("{titer}", "1") == 1
    assert conversion_factor("mg{creat}", "mg") == 1
    assert conversion_factor("mL/min/{1.73_m2}", "mL/min") == 1


def test_calendar_keywords_are_time_units():
    for keyword, ucum_unit in [("year", "a"), ("years", "a"), ("month", "mo"), ("months", "mo"),
                               ("week", "wk"), ("weeks", "wk"), ("day", "d"), ("days", "d"),
                               ("hour", "h"), ("hours", "h"), ("minute", "min"), ("minutes", "min"),
                               ("second", "s"), ("seconds", "s"), ("millisecond", "ms"),
                               ("milliseconds", "ms")]:
        assert conversion_factor(keyword, ucum_unit) == 1, keyword


@pytest.mark.parametrize("text,position,fragment,hint", [
    ("mg/furlong", 3, "furlong", None),
    ("µmol/L", 0, "µmol", "umol/L"),
    ("mg/µL", 3, "µL", "mg/uL"),
    ("mEq/L", 0, "mEq", "meq/L"),
    ("mcg/mL", 0, "mcg", "ug/mL"),
    ("mIU/mL", 0, "mIU", "m[IU]/mL"),
    ("pH", 0, "pH", "[pH]"),
    ("(score)", 1, "score", "{score}"),
    ("mL/min/1.73m2", 9, "73", "mL/min/{1.73_m2}"),
    ("mg/", 3, "", None),
    ("(mg", 0, "(", None),
    ("mg)", 2, ")", None),
    ("", 0, "", None),
    ("kmin", 0, "kmin", None),
    ("mg/0", 3, "0", None),
    ("[arb'U", 0, "[arb'U", None),
    ("{titer", 0, "{titer", None),
    ("mg/24h", 3, "24", None),
    ("mg/dL ", 5, "dL ", "mg/dL"),
    ("mCel", 0, "mCel", None),
])
def test_invalid_units_are_rejected_with_position_and_hint(text, position, fragment, hint):
    with pytest.raises(UnknownUnitError) as caught:
        parse_unit(text)
    error = caught.value
    assert error.unit_text == text
    assert error.position == position
    assert error.fragment == fragment
    assert error.hint == hint
    assert f"position {position}" in str(error)
    if hint is not None:
        assert f"did you mean '{hint}'" in str(error)
    assert not is_valid_unit(text)


def test_micro_sign_rejection_names_the_ucum_spelling():
    with pytest.raises(UnknownUnitError, match=r"did you mean 'umol/L'"):
        parse_unit("µmol/L")


def test_special_units_parse_alone_but_not_in_compounds():
    assert parse_unit("Cel").is_special
    for text in ("Cel/h", "Cel2", "[degF].s", "/Cel"):
        with pytest.raises(UnknownUnitError, match="offset"):
            parse_unit(text)


def test_is_valid_unit_is_false_for_non_strings():
    assert not is_valid_unit(None)
    assert not is_valid_unit(3)


def test_errors_form_one_tree_and_are_exported_from_both_modules():
    assert issubclass(UnitError, ValueError)
    assert issubclass(UnknownUnitError, UnitError)
    assert issubclass(IncompatibleUnitsError, UnitError)
    for name in ("UnitError", "UnknownUnitError", "IncompatibleUnitsError"):
        assert getattr(quantity_module, name) is getattr(ucum, name)


# --------------------------------------------------------------------------- conversion


@pytest.mark.parametrize("value,source,target,expected", [
    ("12.5", "pg/mL", "ng/L", "12.5"),
    ("1", "g/dL", "g/L", "10"),
    ("4.2", "g/dL", "g/L", "42"),
    ("9.5", "mg/dL", "mg/L", "95"),
    ("88.4", "umol/L", "mmol/L", "0.0884"),
    ("2", "d", "h", "48"),
    ("3", "wk", "d", "21"),
    ("1", "a", "d", "365.25"),
    ("1", "mo", "d", "30.4375"),
    ("2", "years", "mo", "24"),
    ("1", "[lb_av]", "g", "453.59237"),
    ("120", "mm[Hg]", "kPa", "15.99864"),
    ("250", "mg/(24.h)", "mg/d", "250"),
    ("5", "%", "1", "0.05"),
    ("1", "[IU]/mL", "[IU]/L", "1000"),
    ("30", "U/L", "ukat/L", "0.5"),
])
def test_conversions_use_exact_ucum_factors(value, source, target, expected):
    converted = q(value, source).convert(target)
    assert converted.unit == target
    assert converted.value == Decimal(expected)
    assert str(converted) == f"{expected} '{target}'"


def test_conversion_results_are_rounded_half_up_to_eight_places():
    assert q("5", "ng/L").convert("g/L").value == Decimal("0.00000001")  # 5e-9 -> 1e-8
    assert q("4", "ng/L").convert("g/L").value == Decimal("0")
    assert q("-5", "ng/L").convert("g/L").value == Decimal("-0.00000001")
    assert q("1", "min").convert("h").value == Decimal("0.01666667")


def test_picograms_per_milliliter_equal_nanograms_per_liter():
    assert q("45", "pg/mL").equals(q("45", "ng/L"))
    assert conversion_factor("pg/mL", "ng/L") == 1


def test_converting_to_the_same_unit_returns_the_quantity_unchanged():
    original = q("2.50", "mg/dL")
    assert original.convert("mg/dL") is original


def test_molar_and_mass_concentrations_do_not_convert_without_a_molar_mass():
    with pytest.raises(IncompatibleUnitsError) as caught:
        q("2.4", "mmol/L").compare(q("9.5", "mg/dL"))
    message = str(caught.value)
    assert "cannot compare 'mmol/L' with 'mg/dL'" in message
    assert "amount-of-substance concentration vs mass concentration" in message
    assert "declare a molar mass" in message
    assert not units_compatible("mmol/L", "mg/dL")


def test_conversion_error_names_both_units_in_order():
    with pytest.raises(IncompatibleUnitsError) as caught:
        q("9.5", "mg/dL").convert("mmol/L")
    assert caught.value.left == "mg/dL" and caught.value.right == "mmol/L"
    assert "cannot convert 'mg/dL' to 'mmol/L'" in str(caught.value)


def test_international_units_are_not_enzyme_units():
    with pytest.raises(IncompatibleUnitsError, match=r"'\[IU\]'.*'U'.*arbitrary units only convert to themselves"):
        q("1", "[IU]").convert("U")


def test_equivalents_do_not_convert_to_moles_without_a_valence():
    with pytest.raises(IncompatibleUnitsError, match="declare a valence"):
        q("140", "meq/L").compare(q("140", "mmol/L"))


def test_arbitrary_units_only_convert_to_themselves():
    assert q("1", "[arb'U]/mL").convert("[arb'U]/L").value == Decimal(1000)
    assert q("20", "[iU]/L").equals(q("20", "[IU]/L"))
    for other in ("[IU]/mL", "1/mL", "U/mL", "g/mL"):
        assert not units_compatible("[arb'U]/mL", other), other
    with pytest.raises(IncompatibleUnitsError):
        q("7.3", "[pH]").compare(q("7.3", "1"))


def test_offset_units_compare_only_with_themselves():
    assert q("37.5", "Cel") > q("36.6", "Cel")
    with pytest.raises(IncompatibleUnitsError, match="offset"):
        q("37", "Cel").convert("K")
    with pytest.raises(IncompatibleUnitsError, match="offset"):
        q("37", "Cel").compare(q("98.6", "[degF]"))


# --------------------------------------------------------------------------- comparison and equality


def test_compare_converts_the_second_operand_exactly():
    assert q("1", "g/dL").compare(q("10", "g/L")) == 0
    assert q("1", "g/dL").compare(q("10.00000001", "g/L")) == -1
    assert q("1", "g/dL").compare(q("9.99999999", "g/L")) == 1
    assert q("10.2", "mg/dL") > q("0.1", "g/L")
    assert q("1", "min") < q("61", "s")
    assert q("24", "h") <= q("1", "d") and q("1", "d") >= q("24", "h")


def test_cql_equal_converts_units_but_python_equality_is_structural():
    assert q("1", "g/dL").equals(q("10", "g/L"))
    assert q("1", "g/dL") != q("10", "g/L")
    assert q("2.50", "mg/dL") == q("2.5", "mg/dL")
    assert hash(q("2.50", "mg/dL")) == hash(q("2.5", "mg/dL"))
    assert len({q("2.50", "mg/dL"), q("2.5", "mg/dL"), q("2.5", "mg/L")}) == 2


def test_equivalent_compares_at_the_precision_of_the_less_precise_operand():
    assert q("1.5", "mg/dL").equivalent(q("1.54", "mg/dL"))
    assert not q("1.5", "mg/dL").equivalent(q("1.56", "mg/dL"))
    assert q("1.50", "mg/dL").equivalent(q("1.54", "mg/dL"))  # trailing zero carries no precision
    assert q("10", "g/L").equivalent(q("1.04", "g/dL"))
    assert not q("10", "g/L").equivalent(q("1.06", "g/dL"))


def test_equivalent_is_false_for_incompatible_units_while_equal_raises():
    assert not q("2.5", "mmol/L").equivalent(q("2.5", "mg/dL"))
    with pytest.raises(IncompatibleUnitsError):
        q("2.5", "mmol/L").equals(q("2.5", "mg/dL"))


def test_ordering_with_other_types_is_refused():
    with pytest.raises(TypeError):
        _ = q("1", "mg") < 3
    with pytest.raises(TypeError):
        q("1", "mg").compare(Decimal(1))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- construction and text


def test_constructor_normalizes_values_to_decimal():
    assert Quantity(3, "mg").value == Decimal(3)
    assert Quantity("2.5", "mg").value == Decimal("2.5")
    assert isinstance(Quantity("2.5").value, Decimal)
    assert Quantity(1, "").unit == "1"
    assert Quantity(1).unit == "1"


@pytest.mark.parametrize("bad,error", [(1.5, TypeError), (True, TypeError), ("abc", ValueError),
                                       ("NaN", ValueError), (Decimal("Infinity"), ValueError)])
def test_constructor_rejects_values_that_are_not_finite_decimals(bad, error):
    with pytest.raises(error):
        Quantity(bad, "mg")


def test_units_are_validated_lazily_unless_checked():
    lazy = Quantity(1, "mg/furlong")
    with pytest.raises(UnknownUnitError):
        lazy.convert("mg/L")
    with pytest.raises(UnknownUnitError, match="furlong"):
        Quantity.checked(1, "mg/furlong")
    assert Quantity.checked("2.5", "mmol/L") == q("2.5", "mmol/L")


def test_string_form_and_parsing_round_trip():
    assert str(q("10.5", "mg/dL")) == "10.5 'mg/dL'"
    assert str(Quantity(Decimal("1E+1"), "g/L")) == "10 'g/L'"
    for original in (q("10.5", "mg/dL"), q("5", "[arb'U]/mL"), q("-0.25", "mL/min/{1.73_m2}"), q("3")):
        assert Quantity.parse(str(original)) == original
    assert Quantity.parse("3 days") == q("3", "days")
    with pytest.raises(ValueError):
        Quantity.parse("three days")


def test_negation_and_absolute_value_keep_the_unit():
    assert -q("3", "mg") == q("-3", "mg")
    assert abs(q("-3", "mg")) == q("3", "mg")
    assert +q("3", "mg") == q("3", "mg")
    assert str(-q("0", "mg")) == "0 'mg'"


# --------------------------------------------------------------------------- addition and subtraction


def test_addition_converts_the_right_operand_into_the_left_unit():
    assert q("1", "g/dL") + q("5", "g/L") == q("1.5", "g/dL")
    assert q("5", "g/L") + q("1", "g/dL") == q("15", "g/L")
    assert q("100", "mg/dL") - q("1", "g/L") == q("0", "mg/dL")
    assert q("1", "d") - q("6", "h") == q("0.75", "d")


def test_adding_incompatible_quantities_raises_with_both_units():
    with pytest.raises(IncompatibleUnitsError, match=r"cannot add 'mg/dL' and 'mmol/L'"):
        q("9.5", "mg/dL") + q("2.4", "mmol/L")
    with pytest.raises(IncompatibleUnitsError, match=r"cannot subtract 'meq/L' and 'mmol/L'"):
        q("140", "meq/L") - q("2", "mmol/L")


def test_plain_numbers_only_add_to_dimensionless_quantities():
    assert q("3") + 1 == q("4")
    assert 2 - q("3") == q("-1")
    assert Decimal("0.5") + q("1.5") == q("2.0")
    with pytest.raises(IncompatibleUnitsError, match="plain number"):
        q("3", "mg/dL") + 1
    with pytest.raises(IncompatibleUnitsError):
        q("3", "%") - Decimal(1)


# --------------------------------------------------------------------------- multiplication and division


def test_squaring_a_concentration_combines_exponents():
    product = q("9", "mg/dL") * q("9", "mg/dL")
    assert product == q("81", "mg2/dL2")
    assert product > q("70", "mg2/dL2")
    assert (product / q("9", "mg/dL")) == q("9", "mg/dL")


def test_calcium_phosphate_product_in_conventional_units_crosses_the_seventy_threshold():
    calcium, phosphate = q("10.2", "mg/dL"), q("7.1", "mg/dL")
    product = calcium * phosphate
    assert product.unit == "mg2/dL2"
    assert product.value == Decimal("72.42")
    assert product.compare(q("70", "mg2/dL2")) == 1


def test_si_product_compares_with_mg2_per_dl2_only_after_explicit_molar_masses():
    calcium_si, phosphate_si = q("2.55", "mmol/L"), q("2.29", "mmol/L")
    si_product = calcium_si * phosphate_si
    assert si_product.unit == "mmol2/L2"
    with pytest.raises(IncompatibleUnitsError, match="molar mass"):
        si_product.compare(q("70", "mg2/dL2"))
    calcium_molar_mass, phosphorus_molar_mass = q("40.08", "g/mol"), q("30.97", "g/mol")
    conventional = (calcium_si * calcium_molar_mass) * (phosphate_si * phosphorus_molar_mass)
    assert conventional.convert("mg2/dL2").value == Decimal("72.48440545")
    assert conventional > q("70", "mg2/dL2")
    threshold_si = q("70", "mg2/dL2") / calcium_molar_mass / phosphorus_molar_mass
    assert abs(threshold_si.convert("mmol2/L2").value - Decimal("5.6393")) < Decimal("0.0001")


def test_molar_mass_turns_millimoles_per_liter_into_milligrams_per_deciliter():
    product = q("2.5", "mmol/L") * q("40.08", "g/mol")
    assert product.value == Decimal("100.2")
    assert product.convert("mg/dL") == q("10.02", "mg/dL")
    back = q("9.5", "mg/dL") / q("40.08", "g/mol")
    # the quotient is rounded to 8 places (0.23702595 in mg.mol/(dL.g)) before conversion
    assert back.unit == "mg.mol/(dL.g)"
    assert back.convert("mmol/L").value == Decimal("2.3702595")


def test_unit_algebra_produces_readable_valid_ucum():
    assert multiply_units("mg/dL", "mg/dL") == "mg2/dL2"
    assert divide_units("mg2/dL2", "mg/dL") == "mg/dL"
    assert multiply_units("mmol/L", "g/mol") == "mmol.g/(L.mol)"
    assert multiply_units("10*3/uL", "10*3/uL") == "10*6/uL2"
    assert divide_units("mg/dL", "mg/dL") == "1"
    assert divide_units("1", "mg/dL") == "dL/mg"
    assert divide_units("1", "h") == "/h"
    assert multiply_units("mg/(24.h)", "h") == "mg/24"
    assert multiply_units("mL/min/{1.73_m2}", "min") == "mL/{1.73_m2}"
    assert conversion_factor(multiply_units("mg/(24.h)", "h"), "mg") == Fraction(1, 24)


def test_multiplying_or_dividing_by_plain_numbers_keeps_the_unit():
    assert q("2.5", "mmol/L") * 2 == q("5", "mmol/L")
    assert 2 * q("2.5", "mmol/L") == q("5", "mmol/L")
    assert q("2.5", "mmol/L") * q("2", "1") == q("5", "mmol/L")
    assert q("2", "1") * q("2.5", "mmol/L") == q("5", "mmol/L")
    assert q("5", "mmol/L") / Decimal(2) == q("2.5", "mmol/L")
    assert q("5", "mmol/L") / q("2") == q("2.5", "mmol/L")


def test_dividing_a_number_by_a_quantity_inverts_the_unit():
    assert Decimal(1) / q("4", "h") == q("0.25", "/h")
    assert 6 / q("3") == q("2")


def test_dividing_equal_units_gives_a_dimensionless_ratio():
    ratio = q("3", "mg/dL") / q("1.5", "mg/dL")
    assert ratio == q("2", "1")


def test_division_rounds_to_eight_decimal_places():
    assert (q("1") / 3).value == Decimal("0.33333333")
    assert (q("2") / 3).value == Decimal("0.66666667")


def test_division_by_zero_raises_zero_division_error():
    for divisor in (q("0", "mg/dL"), Decimal(0), 0):
        with pytest.raises(ZeroDivisionError):
            q("1", "mg/dL") / divisor
    with pytest.raises(ZeroDivisionError):
        Decimal(1) / q("0", "h")


def test_offset_units_cannot_be_multiplied_together():
    assert q("2", "Cel") * 2 == q("4", "Cel")
    with pytest.raises(UnitError, match="offset"):
        q("2", "Cel") * q("3", "Cel")


def test_round_to_cql_decimal_strips_representation_noise():
    assert str(round_to_cql_decimal(Fraction(10))) == "10"
    assert str(round_to_cql_decimal(Decimal("2.500000000"))) == "2.5"
    assert str(round_to_cql_decimal(Fraction(1, 8))) == "0.125"
    assert round_to_cql_decimal(Fraction(-1, 3)) == Decimal("-0.33333333")
