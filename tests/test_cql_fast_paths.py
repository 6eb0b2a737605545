"""Fast paths of the evaluator give exactly what the plain computation gives: each test here
would fail if a kept or specialised result diverged from the reference form."""

from __future__ import annotations

import decimal
from decimal import Decimal, DecimalException

import pytest

from service.cql_like import operators as ops


def _reference_power(a, b):
    try:
        return ops.round8(ops.to_decimal(a) ** ops.to_decimal(b))
    except (DecimalException, ZeroDivisionError, OverflowError):
        return None


POWER_OPERANDS = [
    (Decimal("0.7345"), Decimal("-0.241")), (Decimal("0.7345"), Decimal("-0.2410")),
    (Decimal("4"), Decimal("0.5")), (Decimal("4.00"), Decimal("0.5")), (Decimal("4.0"), Decimal("0.50")),
    (Decimal("-8"), Decimal("0.5")), (Decimal("0"), Decimal("-0.5")), (Decimal("0"), Decimal("0.5")),
    (Decimal("1.0"), Decimal("-1.200")), (Decimal("0.9938"), 54), (2, Decimal("0.5")), (Decimal("1E+20"), Decimal("1.5")),
    (Decimal("10"), Decimal("30.5")), (3, 4), (2, -1), (None, Decimal("0.5")), (Decimal("2"), None),
]


@pytest.mark.parametrize("a, b", POWER_OPERANDS)
def test_a_kept_fractional_power_is_the_computed_one_digit_for_digit(a, b):
    if a is None or b is None:
        assert ops.power(a, b) is None
        return
    expected = _reference_power(a, b) if not (type(a) is int and type(b) is int) else ops.power(a, b)
    for _ in range(3):   # first computed, then kept
        got = ops.power(a, b)
        assert got == expected and str(got) == str(expected)


def test_a_kept_power_is_not_served_to_another_decimal_precision():
    a, b = Decimal("0.7345"), Decimal("-0.241")
    usual = ops.power(a, b)
    with decimal.localcontext() as context:
        context.prec = 5
        narrow = ops.power(a, b)
        assert str(narrow) == str(_reference_power(a, b))
    assert str(narrow) != str(usual)
    assert str(ops.power(a, b)) == str(usual)
