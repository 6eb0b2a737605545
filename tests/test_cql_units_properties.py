"""Algebraic properties of UCUM conversion and Quantity arithmetic, checked with hypothesis."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.cql_like.quantity import DECIMAL_PLACES, Quantity, parse_unit
from service.cql_like.ucum import conversion_factor, divide_units, multiply_units

# Deterministic and moderate so CI results never depend on the run.
STABLE = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])

HALF_QUANTUM = Fraction(1, 2 * 10 ** DECIMAL_PLACES)

# Units within one group share a dimension; groups cover the lab data the service sees.
COMPATIBLE_GROUPS = [
    ["mg/dL", "g/L", "mg/L", "ug/mL", "ng/mL", "pg/mL", "ng/L", "g/dL", "ug/dL", "g%"],
    ["mmol/L", "umol/L", "nmol/L", "pmol/L", "mol/m3", "mmol/dL"],
    ["s", "min", "h", "d", "wk", "mo", "a", "year", "days", "hours", "ms"],
    ["L", "mL", "dL", "uL", "l", "cm3", "[foz_us]"],
    ["U/L", "mU/mL", "kU/L", "ukat/L"],
    ["[IU]/mL", "[IU]/L", "m[IU]/mL", "[iU]/L"],
    ["mg/(24.h)", "mg/d", "g/d", "ug/min"],
    ["mL/min/{1.73_m2}", "L/d/{1.73_m2}", "mL/s"],
    ["%", "1", "[ppth]", "{ratio}"],
    ["mm[Hg]", "kPa", "Pa", "bar"],
    ["[lb_av]", "kg", "g", "[oz_av]"],
    ["[in_i]", "cm", "m", "[ft_i]"],
    ["10*3/uL", "10*9/L", "10^6/mL"],
]
ALL_UNITS = [unit for group in COMPATIBLE_GROUPS for unit in group]

values = st.decimals(min_value=Decimal("-100000"), max_value=Decimal("100000"), places=4,
                     allow_nan=False, allow_infinity=False)
nonzero_values = values.filter(lambda v: abs(v) >= Decimal("0.001"))


@st.composite
def compatible_units(draw, count: int = 2):
    group = draw(st.sampled_from(COMPATIBLE_GROUPS))
    return [draw(st.sampled_from(group)) for _ in range(count)]


@st.composite
def compatible_quantities(draw):
    first_unit, second_unit = draw(compatible_units())
    return Quantity(draw(values), first_unit), Quantity(draw(values), second_unit)


def ratio(source: str, target: str) -> Fraction:
    return conversion_factor(source, target)


@STABLE
@given(units=compatible_units(), value=values)
def test_converting_there_and_back_loses_only_the_eight_place_rounding(units, value):
    source, target = units
    r = ratio(source, target)
    there = Quantity(value, source).convert(target)
    back = there.convert(source)
    # each conversion rounds once to 8 places; the first rounding is scaled back by 1/r
    bound = HALF_QUANTUM / r + HALF_QUANTUM + Fraction(abs(value)) / 10 ** 8
    assert abs(Fraction(back.value) - Fraction(value)) <= bound
    assert abs(Fraction(there.value) - Fraction(value) * r) <= HALF_QUANTUM


@STABLE
@given(units=compatible_units(count=3))
def test_conversion_factors_chain_exactly(units):
    a, b, c = units
    assert ratio(a, b) * ratio(b, c) == ratio(a, c)
    assert ratio(a, b) * ratio(b, a) == 1


@STABLE
@given(pair=compatible_quantities())
def test_adding_then_subtracting_the_same_quantity_is_exact(pair):
    a, b = pair
    assert ((a + b) - b) == a
    assert ((a + b) - b).unit == a.unit


@STABLE
@given(a_unit=st.sampled_from(ALL_UNITS), b_unit=st.sampled_from(ALL_UNITS), a_value=values, b_value=nonzero_values)
def test_multiplying_then_dividing_by_the_same_quantity_restores_it(a_unit, b_unit, a_value, b_value):
    a, b = Quantity(a_value, a_unit), Quantity(b_value, b_unit)
    restored = (a * b) / b
    assert ratio(restored.unit, a.unit) == 1
    assert parse_unit(restored.unit).dimension == parse_unit(a.unit).dimension
    # the product and the quotient are each rounded to 8 places
    bound = HALF_QUANTUM / Fraction(abs(b_value)) + HALF_QUANTUM
    assert abs(Fraction(restored.value) - Fraction(a_value)) <= bound


@STABLE
@given(a_unit=st.sampled_from(ALL_UNITS), b_unit=st.sampled_from(ALL_UNITS), a_value=values, b_value=values)
def test_multiplication_commutes_in_value_and_dimension(a_unit, b_unit, a_value, b_value):
    a, b = Quantity(a_value, a_unit), Quantity(b_value, b_unit)
    ab, ba = a * b, b * a
    assert ab.value == ba.value
    assert parse_unit(ab.unit).dimension == parse_unit(ba.unit).dimension
    assert ratio(ab.unit, ba.unit) == 1
    assert ab.equals(ba)


@STABLE
@given(a_unit=st.sampled_from(ALL_UNITS), b_unit=st.sampled_from(ALL_UNITS))
def test_unit_algebra_adds_dimensions_and_multiplies_factors(a_unit, b_unit):
    a, b = parse_unit(a_unit), parse_unit(b_unit)
    product, quotient = parse_unit(multiply_units(a_unit, b_unit)), parse_unit(divide_units(a_unit, b_unit))
    assert product.dimension == tuple(x + y for x, y in zip(a.dimension, b.dimension))
    assert quotient.dimension == tuple(x - y for x, y in zip(a.dimension, b.dimension))
    assert product.exact_factor == a.exact_factor * b.exact_factor
    assert quotient.exact_factor == a.exact_factor / b.exact_factor
    assert divide_units(a_unit, a_unit) == "1"


@STABLE
@given(a_unit=st.sampled_from(ALL_UNITS), b_unit=st.sampled_from(ALL_UNITS))
def test_printed_unit_algebra_is_stable_when_reparsed(a_unit, b_unit):
    text = multiply_units(a_unit, b_unit)
    assert parse_unit(text).text == text
    assert multiply_units(text, "1") == text
    assert divide_units(text, "1") == text


@STABLE
@given(pair=compatible_quantities())
def test_compare_is_antisymmetric_and_matches_equals(pair):
    a, b = pair
    assert a.compare(b) == -b.compare(a)
    assert a.compare(a) == 0
    assert a.equals(b) == (a.compare(b) == 0)
    assert (a < b) == (b > a)


@STABLE
@given(pair=compatible_quantities(), data=st.data())
def test_compare_does_not_change_when_an_operand_changes_unit(pair, data):
    a, b = pair
    group = next(g for g in COMPATIBLE_GROUPS if a.unit in g and b.unit in g)
    other_unit = data.draw(st.sampled_from(group))
    moved = a.convert(other_unit)
    if moved.equals(a):
        assert moved.compare(b) == a.compare(b)
    else:
        # the 8-place rounding of the conversion may only matter when a and b are that close
        gap = abs(Fraction(a.value) - Fraction(b.value) / ratio(a.unit, b.unit))
        assert moved.compare(b) == a.compare(b) or gap <= HALF_QUANTUM / ratio(a.unit, other_unit)


@STABLE
@given(units=compatible_units(), value=values)
def test_quantity_text_parses_back_to_the_same_quantity(units, value):
    original = Quantity(value, units[0])
    assert Quantity.parse(str(original)) == original
    assert parse_unit(units[0]).text == units[0]
