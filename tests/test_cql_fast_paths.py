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


# ---- Quantity products and rounding: the Decimal path against the exact Fraction path ----------

from fractions import Fraction   # noqa: E402

from hypothesis import given, settings, strategies as st   # noqa: E402

from service.cql_like import quantity as q   # noqa: E402
from service.cql_like.quantity import Quantity   # noqa: E402


def _reference_round(value) -> Decimal:
    exact = Fraction(value)
    units = int(abs(exact) * 10 ** 8 + Fraction(1, 2))
    units = -units if exact < 0 else units
    with decimal.localcontext() as context:
        context.prec = 80
        result = Decimal(units).scaleb(-8)
        if result == 0:
            return Decimal(0)
        result = result.normalize()
        return result.quantize(Decimal(1)) if result.as_tuple().exponent > 0 else result


CQL_DECIMALS = st.decimals(min_value=Decimal("-1e27"), max_value=Decimal("1e27"), allow_nan=False,
                           allow_infinity=False, places=8) | st.sampled_from(
    [Decimal("0.000000005"), Decimal("-0.000000005"), Decimal("0.000000015"), Decimal("2.5E-9"), Decimal("-0"),
     Decimal("1E+20"), Decimal("10.000"), Decimal("1.00000000500")])
NUMBERS = CQL_DECIMALS | st.integers(min_value=-2**31, max_value=2**31 - 1)


@settings(max_examples=400, deadline=None)
@given(NUMBERS, NUMBERS)
def test_a_quantity_product_is_the_exact_product_rounded_half_away_from_zero(a, b):
    got = (Quantity(Decimal(a), "mg/dL") * b).value
    expected = _reference_round(Fraction(a) * Fraction(b))
    assert str(got) == str(expected)


@settings(max_examples=300, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False) | st.fractions())
def test_rounding_a_decimal_or_a_fraction_gives_the_reference_digits(value):
    if abs(Fraction(value)) >= 10 ** 60:
        return   # beyond what any CQL operation produces
    assert str(q.round_to_cql_decimal(value)) == str(_reference_round(value))


@pytest.mark.parametrize("value", [Decimal("0.000000005"), Decimal("-0.000000005"), Decimal("0.0000000049999"),
                                   Decimal("-1.123456785"), Decimal("123.000"), Decimal("1E+3"), Decimal("-0E-12"),
                                   Decimal("1E+70"), Decimal("12345678901234567890.123456789")])
def test_rounding_ties_and_wide_values_gives_the_reference_digits(value):
    assert str(q.round_to_cql_decimal(value)) == str(_reference_round(value))


def test_a_product_too_wide_for_decimals_takes_the_exact_path():
    wide = Decimal("1.234567890123456789012345678901234567891234567")   # 91 digits squared: Decimal would round
    got = (Quantity(wide, "g") * wide).value
    assert got == _reference_round(Fraction(wide) * Fraction(wide))
    assert (Quantity(Decimal(3), "mg/dL") * Quantity(Decimal("1.5"), "mg/dL")).unit == "mg2/dL2"


# ---- queries: one evidence set emptied per row, and the query's own guard ----------------------

QUERY_FACTS = {
    "patient": {"source": "Patient/p"},
    "Observation": [
        {"source": f"Observation/{i}", "status": status, "value": {"quantity": [value, "mg/dL"]} if value else None}
        for i, (value, status) in enumerate([("5", "final"), ("15", "final"), (None, "amended"), ("20", "final")],
                                            start=1)],
    "Condition": [{"source": "Condition/1", "clinicalStatus": "active"}],
}
QUERY_LIBRARY = """
define "Kept": [Observation] O where O.value > 10 'mg/dL' and exists [Condition]
define "Counted": Count([Observation] O where O.value > 10 'mg/dL')
define "Read then rejected": [Observation] O where exists [Condition] and O.value > 100 'mg/dL'
define "Some rejected": Count([Observation] O where exists ([Condition] C where C.clinicalStatus = 'active') and O.status = 'amended')
define "Returned": [Observation] O return O.status
define "Sorted": [Observation] O sort by status desc
define "Single": (First([Observation])) O where O.status = 'final' return O.status
define "Single rejected": (First([Observation])) O where O.status = 'amended'
define "Null source": (First(List<Observation>{})) O return O.status
define "Empty": (List<Observation>{}) O where O.status = 'final'
define "Unit clash": [Observation] O where O.value > 1 'mmol/L'
"""


def _query_results(inline: bool):
    from datetime import datetime, timezone
    from pathlib import Path

    from service.cql_like import load_model_info
    from service.cql_like.checker import check
    from service.cql_like.codegen import generate
    from service.cql_like.library import Library
    from service.cql_like.parser import parse
    from cqlcases import FactsProvider, wrap

    model = load_model_info(Path(__file__).resolve().parents[1] / "service" / "knowledge" / "model.json")
    source = wrap(None, QUERY_LIBRARY)
    checked = check(parse(source, "q.cql"), source=source, filename="q.cql", model=model, valuesets={})
    assert not checked.errors
    library = Library(generate(checked.library, inline=inline))
    now = datetime(2026, 11, 15, tzinfo=timezone.utc)
    out = {}
    for name in library.define_names:
        try:
            result = library.evaluate_define(name, FactsProvider(QUERY_FACTS), now=now)
            value = result.value
            out[name] = ([getattr(v, "source", v) for v in value] if isinstance(value, list)
                         else getattr(value, "source", value), result.evidence)
        except Exception as error:   # noqa: BLE001 - the error itself is compared
            out[name] = (type(error).__name__, str(error).splitlines()[0])
    return out


def test_queries_keep_the_evidence_of_kept_rows_only():
    got = _query_results(inline=True)
    o = [f"Observation/{i}" for i in range(1, 5)]
    assert got["Kept"] == ([o[1], o[3]], ("Condition/1", o[1], o[3]))
    assert got["Counted"] == (2, (o[1], o[3]))
    assert got["Read then rejected"] == ([], ())
    assert got["Some rejected"] == (1, ("Condition/1", o[2]))
    assert got["Returned"] == (["final", "amended"], tuple(o))
    assert got["Sorted"] == ([o[0], o[1], o[3], o[2]], tuple(o))
    assert got["Single"] == ("final", (o[0],))
    assert got["Single rejected"] == (None, (o[0],))   # First's pick is evidence, as always
    assert got["Null source"] == (None, ())
    assert got["Empty"] == ([], ())
    assert got["Unit clash"][0] == "CqlEvaluationError" and "q.cql:" in got["Unit clash"][1]
    assert got == _query_results(inline=False)


# ---- comparison and membership fast paths against the general branches ----------------------

from datetime import date, datetime, timedelta, timezone   # noqa: E402

from service.cql_like.errors import CqlRuntimeError   # noqa: E402
from service.cql_like.values import Code   # noqa: E402

_PLUS_TWO = timezone(timedelta(hours=2))
TEMPORALS = [datetime(2026, 1, 1, 10, tzinfo=timezone.utc), datetime(2026, 1, 1, 12, tzinfo=_PLUS_TWO),
             datetime(2026, 1, 1, 10, 0, 0, 1, tzinfo=timezone.utc), datetime(2025, 12, 31, 23, tzinfo=_PLUS_TWO),
             datetime(2026, 1, 1, 10), date(2026, 1, 1), date(2025, 12, 31)]


def _reference_temporal_order(a, b):
    """The general branch of `compare`: both as aware datetimes when either is a DateTime."""
    if isinstance(a, datetime) or isinstance(b, datetime):
        a, b = ops.as_datetime(a), ops.as_datetime(b)
    return (a > b) - (a < b)


@pytest.mark.parametrize("a", TEMPORALS)
@pytest.mark.parametrize("b", TEMPORALS)
def test_comparing_two_aware_datetimes_gives_the_order_of_the_general_branch(a, b):
    assert ops.compare(a, b) == _reference_temporal_order(a, b)
    assert ops.equal(a, b) is (_reference_temporal_order(a, b) == 0)


def _reference_contains(items, element):
    for item in items:
        if item is not None and ops.equal(item, element) is True:
            return True
    return False


MEMBER_LISTS = [["final", "amended"], ["final", None, "amended"], [None], [], ["Final"],
                [Code("http://loinc.org", "final"), "final"], [1, "1", True], [Quantity(Decimal(1), "mg")]]


@pytest.mark.parametrize("items", MEMBER_LISTS)
@pytest.mark.parametrize("element", ["final", "amended", "1", "", "FINAL"])
def test_a_string_in_a_list_is_found_exactly_where_cql_equality_finds_it(items, element):
    try:
        expected = _reference_contains(items, element)
    except CqlRuntimeError as error:   # a quantity against a string cannot be compared, either way
        with pytest.raises(CqlRuntimeError) as raised:
            ops.list_contains(items, element)
        assert str(raised.value) == str(error)
        return
    assert ops.list_contains(items, element) is expected


# ---- sorting by keys Python orders as `compare` does, against the comparison sort ----------------

from functools import cmp_to_key   # noqa: E402


def _reference_sort(items, keys, descending):
    def cmp(x, y):
        kx, ky = x[0], y[0]
        if kx is None or ky is None:
            return (kx is not None) - (ky is not None)
        return ops.compare(kx, ky)
    return [item for _, item in sorted(zip(keys, items), key=cmp_to_key(cmp), reverse=descending)]


_AWARE = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2027, 1, 1),
                      timezones=st.sampled_from([timezone.utc, _PLUS_TWO]))
SORT_KEYS = st.one_of(
    st.lists(st.none() | st.sampled_from(["a", "b", "B", "", "ab"]), max_size=8),
    st.lists(st.none() | st.integers(-3, 3) | st.sampled_from([Decimal("1.0"), Decimal("1"), Decimal("-0.5")]), max_size=8),
    st.lists(st.none() | _AWARE, max_size=8),
    st.lists(st.none() | st.dates(min_value=date(2025, 1, 1), max_value=date(2025, 1, 9)), max_size=8),
    st.lists(st.none() | _AWARE | st.dates(min_value=date(2025, 1, 1), max_value=date(2025, 1, 9))
             | st.just(datetime(2025, 1, 1)), max_size=8),   # a mix: the comparison sort
    st.lists(st.none() | st.booleans() | st.integers(0, 1), max_size=5),   # cannot be ordered: same error
)


@settings(max_examples=300, deadline=None)
@given(SORT_KEYS, st.booleans())
def test_sorting_by_keys_keeps_the_order_and_ties_of_the_comparison_sort(keys, descending):
    items = [f"row{i}" for i in range(len(keys))]   # distinct rows, so ties show their order
    try:
        expected = _reference_sort(items, keys, descending)
    except CqlRuntimeError as error:
        with pytest.raises(CqlRuntimeError) as raised:
            ops.sort_by_keys(items, keys, descending)
        assert str(raised.value) == str(error)
        return
    assert ops.sort_by_keys(items, keys, descending) == expected


# ---- Decimal arithmetic decided at once, against the number branch ------------------------------

import operator   # noqa: E402


@settings(max_examples=300, deadline=None)
@given(CQL_DECIMALS, CQL_DECIMALS)
def test_decimal_arithmetic_gives_the_number_branch_digit_for_digit(a, b):
    for fast, plain in ((ops.add, operator.add), (ops.subtract, operator.sub), (ops.multiply, operator.mul)):
        expected = ops.round8(plain(ops.to_decimal(a), ops.to_decimal(b)))
        got = fast(a, b)
        assert str(got) == str(expected)
        assert str(fast(a, int(b))) == str(ops.round8(plain(a, Decimal(int(b)))))   # an Integer: the general branch


def test_decimal_arguments_are_one_call_exactly_when_their_digits_and_exponent_are_the_same():
    from service.cql_like.codegen import argument_key as key

    same = [(Decimal("1.0"), Decimal("1.0")), (Decimal("-0"), Decimal("-0")), (Decimal("1E+2"), Decimal("1E+2"))]
    different = [(Decimal("1.0"), Decimal("1.00")), (Decimal("0"), Decimal("-0")), (Decimal("100"), Decimal("1E+2")),
                 (Decimal(1), 1), (Decimal("0.1"), "0.1")]
    for a, b in same:
        assert key(a) == key(b) and a.as_tuple() == b.as_tuple()
    for a, b in different:
        assert key(a) != key(b)


def test_exists_records_every_present_element_with_or_without_nulls():
    from types import SimpleNamespace

    from service.cql_like import inline
    from service.cql_like.values import CqlTuple, Record

    a, b = Record("Observation", {}, "Observation/1"), Record("Observation", {}, "Observation/2")
    pair = CqlTuple({"first": a, "n": 1})
    for value, expected in [([a, b], (True, {"Observation/1", "Observation/2"})), ([None, a], (True, {"Observation/1"})),
                            ([None], (False, set())), ([], (False, set())), (None, (False, set())),
                            ([pair, None, b], (True, {"Observation/1", "Observation/2"})), ([0, ""], (True, set()))]:
        ctx = SimpleNamespace(ev=set())
        assert (inline._exists(ctx, value), ctx.ev) == expected
