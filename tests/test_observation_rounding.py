"""A converted lab value is rounded to CQL's 8 decimal places by Decimal arithmetic: the very digits
`round_to_cql_decimal` gives through exact fractions."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from service.cql_like.quantity import round_to_cql_decimal
from service.pipeline.observations import _cql_decimal

_DECIMALS = st.builds(lambda digits, exponent: Decimal(digits).scaleb(exponent),
                      st.integers(min_value=-10**30, max_value=10**30), st.integers(min_value=-40, max_value=20))


@settings(max_examples=2000, deadline=None)
@given(_DECIMALS)
def test_same_digits_as_the_exact_rounding(value):
    assert str(_cql_decimal(value)) == str(round_to_cql_decimal(value))


def test_halves_round_away_from_zero_and_zeros_are_dropped():
    for value in ("0.000000005", "-0.000000005", "-0.0000000049", "12.3450000000", "4.01E+4", "-0", "1E-30"):
        assert str(_cql_decimal(Decimal(value))) == str(round_to_cql_decimal(Decimal(value)))
    assert str(_cql_decimal(Decimal("0.000000005"))) == "1E-8"
