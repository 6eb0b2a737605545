"""Property-based tests: arithmetic, unit round trips, date arithmetic and three-valued logic laws.

One library is compiled once; hypothesis feeds values in through parameters.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from service.cql_like import compile_library, format_value, load_model_info
from service.cql_like.quantity import Quantity

MODEL = load_model_info(Path(__file__).resolve().parents[1] / "service" / "knowledge" / "model.json")
NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)

LIBRARY = compile_library("""library Properties version '1'
parameter "I" Integer
parameter "J" Integer
parameter "X" Decimal
parameter "Y" Decimal
parameter "Q" Quantity
parameter "D" Date
parameter "N" Integer
parameter "P" Boolean
parameter "R" Boolean
context Patient
define "I plus J": "I" + "J"
define "I times J": "I" * "J"
define "I minus J": "I" - "J"
define "X plus Y minus Y": "X" + "Y" - "Y"
define "X less than Y": "X" < "Y"
define "X at least Y": "X" >= "Y"
define "Q round trip": ConvertQuantity(ConvertQuantity("Q", 'mg'), 'g')
define "Q equals its conversion": "Q" = ConvertQuantity("Q", 'ug')
define "Q in mg/dL vs g/L": ConvertQuantity("Q" / 1 'dL', 'g/L')
define "D plus N days minus N days": "D" + ToQuantity("N") * 1 'd' - ToQuantity("N") * 1 'd'
define "Years between D and D plus N years": years between "D" and ("D" + "N" * 1 year)
define "Not (P and R)": not ("P" and "R")
define "(not P) or (not R)": (not "P") or (not "R")
define "P implies R": "P" implies "R"
define "(not P) or R": (not "P") or "R"
define "P xor R": "P" xor "R"
define "(P or R) and not (P and R)": ("P" or "R") and not ("P" and "R")
""", model=MODEL)


class NoData:
    def patient(self):
        return None

    def retrieve(self, type_name, codes):
        return []


def run(define: str, **parameters):
    return LIBRARY.evaluate_define(define, NoData(), parameters=parameters, now=NOW).value


ints = st.integers(min_value=-(2**31), max_value=2**31 - 1)
decimals = st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=4, allow_nan=False,
                       allow_infinity=False)
grams = st.decimals(min_value=Decimal("-1e6"), max_value=Decimal("1e6"), places=3, allow_nan=False,
                    allow_infinity=False)
booleans = st.sampled_from([True, False, None])
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))


def in_int32(value: int):
    return value if -(2**31) <= value <= 2**31 - 1 else None


@given(ints, ints)
def test_integer_arithmetic_matches_python_or_is_null_on_overflow(i, j):
    assert run("I plus J", I=i, J=j) == in_int32(i + j)
    assert run("I minus J", I=i, J=j) == in_int32(i - j)
    assert run("I times J", I=i, J=j) == in_int32(i * j)


@given(decimals, decimals)
def test_decimal_addition_then_subtraction_returns_the_start(x, y):
    assert run("X plus Y minus Y", X=x, Y=y) == x


@given(decimals, decimals)
def test_less_than_and_at_least_are_complementary(x, y):
    assert run("X less than Y", X=x, Y=y) is (not run("X at least Y", X=x, Y=y))


@given(grams)
def test_converting_grams_to_milligrams_and_back_is_exact(value):
    result = run("Q round trip", Q=Quantity(value, "g"))
    assert result.unit == "g" and result.value == value


@given(grams)
def test_a_quantity_equals_its_own_conversion(value):
    assert run("Q equals its conversion", Q=Quantity(value, "g")) is True


@given(grams)
def test_mass_per_decilitre_is_ten_times_the_mass_per_litre(value):
    result = run("Q in mg/dL vs g/L", Q=Quantity(value, "g"))
    assert result == Quantity(value * 10, "g/L") or (result.unit == "g/L" and result.value == value * 10)


@given(dates, st.integers(min_value=0, max_value=3000))
def test_adding_then_subtracting_days_returns_the_date(day, n):
    assert run("D plus N days minus N days", D=day, N=n) == day


@given(dates.filter(lambda d: (d.month, d.day) != (2, 29)), st.integers(min_value=0, max_value=100))
def test_whole_years_between_a_date_and_that_date_plus_n_years_is_n(day, n):
    # 29 February is left out: adding years clamps it to the 28th (covered by the compliance cases)
    assert run("Years between D and D plus N years", D=day, N=n) == n


@settings(max_examples=30)
@given(booleans, booleans)
def test_three_valued_logic_laws(p, r):
    assert run("Not (P and R)", P=p, R=r) == run("(not P) or (not R)", P=p, R=r)
    assert run("P implies R", P=p, R=r) == run("(not P) or R", P=p, R=r)
    assert run("P xor R", P=p, R=r) == run("(P or R) and not (P and R)", P=p, R=r)


@given(decimals)
def test_formatted_decimal_reads_back_as_the_same_value(x):
    text = format_value(x)
    library = compile_library(f"library F version '1'\ncontext Patient\ndefine \"V\": {text}", model=MODEL)
    assert library.evaluate_define("V", NoData(), now=NOW).value == x
