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


def test_a_list_of_records_is_one_call_exactly_when_it_holds_the_same_records_in_order():
    from service.cql_like import codegen
    from service.cql_like.values import Record

    a, b = Record("Observation", {"id": "1"}, "Observation/1"), Record("Observation", {"id": "2"}, "Observation/2")
    twin = Record("Observation", {"id": "1"}, "Observation/1")   # equal fields, another record
    key = codegen.argument_key
    assert key([a, b]) == key(list((a, b)))
    assert key([a, b]) != key([b, a])
    assert key([a, b]) != key([twin, b])
    assert key([a]) != key([a, a]) and key([]) != key([a])
    assert key([a, None]) != key([a]) and key([a, None]) == key([a, None])
    assert key([a, "x"]) == key([a, "x"]) and key([a, "x"]) != key([a])
    assert key([[a]]) == key([[a]]) and key([[a]]) != key([a])
    assert len({key([]), key([a]), key("list of records"), key([None]), key(None)}) == 5


def test_a_function_over_two_lists_of_the_same_records_is_evaluated_once():
    from datetime import datetime, timezone
    from pathlib import Path

    from service.cql_like import compile_library, load_model_info
    from cqlcases import FactsProvider

    root = Path(__file__).resolve().parents[1]
    library = compile_library(
        "library T version '1'\nusing CalcinosisFacts version '1.0.0'\ncontext Patient\n"
        "define function Statuses(cs List<Condition>): cs C return all C.clinicalStatus\n"
        'define "Direct": Statuses([Condition])\n'
        'define "Filtered": Statuses([Condition] C where C.clinicalStatus is not null)\n'
        'define "None Kept": Statuses([Condition] C where false)\n',
        filename="t.cql", model=load_model_info(root / "service" / "knowledge" / "model.json"))
    facts = {"patient": {"source": "Patient/p"},
             "Condition": [{"source": "Condition/1", "clinicalStatus": "active"},
                           {"source": "Condition/2", "clinicalStatus": "resolved"}]}
    result = library.evaluate(FactsProvider(facts), now=datetime(2026, 11, 15, tzinfo=timezone.utc))
    assert result["Direct"].value == result["Filtered"].value == ["active", "resolved"]
    assert result["Direct"].evidence == result["Filtered"].evidence == ("Condition/1", "Condition/2")
    assert (result["None Kept"].value, result["None Kept"].evidence) == ([], ())
