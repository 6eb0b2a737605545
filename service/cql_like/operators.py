"""Runtime semantics of CQL operators over Python values.

Null propagation, three-valued comparison, Integer/Decimal promotion,
Quantity arithmetic through quantity.py (unit failures raise UnitError, which
the evaluator reports as a CqlEvaluationError naming the define) and calendar
arithmetic on Date/DateTime.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Context, Decimal, DecimalException, getcontext
from functools import cmp_to_key
from operator import itemgetter
from typing import Any, Callable, Iterable

from .errors import CqlRuntimeError, UnitError
from .quantity import Quantity
from .values import Code, Concept, CqlTuple, Interval, Record

EIGHT_PLACES = Decimal("1e-8")
DECIMAL_LIMIT = Decimal(10) ** 28   # CQL Decimal: |x| < 10^28 with at most 8 decimal places
_WIDE = Context(prec=80)

# duration unit spelling (CQL keyword or UCUM) -> canonical calendar unit
TIME_UNITS = {
    "year": "year", "years": "year", "a": "year",
    "month": "month", "months": "month", "mo": "month",
    "week": "week", "weeks": "week", "wk": "week",
    "day": "day", "days": "day", "d": "day",
    "hour": "hour", "hours": "hour", "h": "hour",
    "minute": "minute", "minutes": "minute", "min": "minute",
    "second": "second", "seconds": "second", "s": "second",
    "millisecond": "millisecond", "milliseconds": "millisecond", "ms": "millisecond",
}
_SUBDAY_SECONDS = {"hour": 3600, "minute": 60, "second": 1, "millisecond": Decimal("0.001")}


INTEGER_MIN, INTEGER_MAX = -2**31, 2**31 - 1


def checked_int(value: int) -> int | None:
    """CQL Integer is 32-bit: an overflowing result is null."""
    return value if INTEGER_MIN <= value <= INTEGER_MAX else None


def round8(value: Decimal | None) -> Decimal | None:
    """CQL Decimal keeps at most 8 decimal places; a result outside its range is null (CQL overflow)."""
    if value is None or not value.is_finite() or abs(value) >= DECIMAL_LIMIT:
        return None
    if value.as_tuple().exponent < -8:  # type: ignore[operator]
        return value.quantize(EIGHT_PLACES, rounding=ROUND_HALF_UP, context=_WIDE)
    return value


def is_number(value: Any) -> bool:
    """True for CQL Integer/Decimal values; bool is excluded although Python treats it as an int."""
    kind = type(value)
    if kind is int or kind is Decimal:
        return True
    return isinstance(value, (int, Decimal)) and not isinstance(value, bool)


def to_decimal(value: Any) -> Decimal:
    """The value as a Decimal (an int converts exactly)."""
    return value if type(value) is Decimal or isinstance(value, Decimal) else Decimal(value)


def as_quantity(value: Any) -> Quantity:
    """The value as a Quantity; a plain number gets unit '1' so it can mix with quantities."""
    return value if isinstance(value, Quantity) else Quantity(to_decimal(value), "1")


def as_datetime(value: date | datetime) -> datetime:
    """An aware datetime for comparing Dates with DateTimes: a Date is midnight UTC, a naive value is UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)


# ---- comparison --------------------------------------------------------------

def compare(a: Any, b: Any) -> int | None:
    """-1/0/1, or None when either side is null; raises for values that cannot be ordered."""
    if a is None or b is None:
        return None
    kind = type(a)
    if kind is type(b) and (kind is Decimal or kind is int or kind is str):   # the usual case, decided at once
        return (a > b) - (a < b)
    if kind is datetime and type(b) is datetime and a.tzinfo is not None and b.tzinfo is not None:
        return (a > b) - (a < b)   # two aware DateTimes (the facts' and the clock's): as_datetime keeps both
    if is_number(a) and is_number(b):
        return (a > b) - (a < b)
    if isinstance(a, Quantity) or isinstance(b, Quantity):
        if not (isinstance(a, Quantity) and isinstance(b, Quantity)):
            raise CqlRuntimeError(f"cannot compare {type_label(a)} with {type_label(b)}")
        return a.compare(b)
    if isinstance(a, date) and isinstance(b, date):
        if isinstance(a, datetime) or isinstance(b, datetime):
            a, b = as_datetime(a), as_datetime(b)
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    raise CqlRuntimeError(f"cannot compare {type_label(a)} with {type_label(b)}")


def less(a: Any, b: Any) -> bool | None:
    """CQL `<`: null when either side is null."""
    c = compare(a, b)
    return None if c is None else c < 0


def less_equal(a: Any, b: Any) -> bool | None:
    """CQL `<=`: null when either side is null."""
    c = compare(a, b)
    return None if c is None else c <= 0


def greater(a: Any, b: Any) -> bool | None:
    """CQL `>`: null when either side is null."""
    c = compare(a, b)
    return None if c is None else c > 0


def greater_equal(a: Any, b: Any) -> bool | None:
    """CQL `>=`: null when either side is null."""
    c = compare(a, b)
    return None if c is None else c >= 0


def equal(a: Any, b: Any) -> bool | None:
    """CQL `=`: null if either side is null (or an element comparison is null)."""
    if a is None or b is None:
        return None
    kind = type(a)
    if kind is type(b) and (kind is str or kind is int or kind is bool):
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if is_number(a) and is_number(b):
        return a == b
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        return a.compare(b) == 0
    if isinstance(a, date) and isinstance(b, date):
        return compare(a, b) == 0
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        return _all_equal(zip(a, b), _equal_or_both_null)
    if type(a) is CqlTuple and type(b) is CqlTuple:
        if set(a) != set(b):
            return False
        return _all_equal(((a[k], b[k]) for k in a), _equal_or_both_null)
    if isinstance(a, Interval) and isinstance(b, Interval):
        a, b = closed_integer_interval(a), closed_integer_interval(b)
        if (a.low_closed, a.high_closed) != (b.low_closed, b.high_closed):
            return False
        return _all_equal([(a.low, b.low), (a.high, b.high)], equal)
    if isinstance(a, Concept) and isinstance(b, Code) or isinstance(a, Code) and isinstance(b, Concept):
        return False
    if type(a) is not type(b):
        if isinstance(a, Quantity) or isinstance(b, Quantity):
            raise CqlRuntimeError(f"cannot compare {type_label(a)} with {type_label(b)}")
        return False
    return a == b


def closed_integer_interval(interval: Interval) -> Interval:
    """Integer intervals with open bounds as the closed interval of the same integers: (1, 6) is [2, 5]."""
    low, high, low_closed, high_closed = interval.low, interval.high, interval.low_closed, interval.high_closed
    if not low_closed and type(low) is int:
        low, low_closed = low + 1, True
    if not high_closed and type(high) is int:
        high, high_closed = high - 1, True
    return Interval(low, high, low_closed, high_closed)


def _equal_or_both_null(a: Any, b: Any) -> bool | None:
    """Element equality inside lists and tuples: two nulls are equal (CQL 1.5 List/Tuple Equal)."""
    if a is None and b is None:
        return True
    return equal(a, b)


def _all_equal(pairs: Iterable[tuple[Any, Any]], test: Callable[[Any, Any], bool | None]) -> bool | None:
    unknown = False
    for x, y in pairs:
        result = test(x, y)
        if result is False:
            return False
        if result is None:
            unknown = True
    return None if unknown else True


def not_equal(a: Any, b: Any) -> bool | None:
    """CQL `!=`: the negation of `=`, null when `=` is null."""
    result = equal(a, b)
    return None if result is None else not result


def _normalize_text(text: str) -> str:
    return " ".join(text.split()).lower()


def equivalent(a: Any, b: Any) -> bool:
    """CQL `~`: never null; null ~ null is true; strings ignore case and spacing; codes match on system+code."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) and isinstance(b, str):
        return _normalize_text(a) == _normalize_text(b)
    if is_number(a) and is_number(b):
        return _decimal_equivalent(to_decimal(a), to_decimal(b))
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        try:
            return bool(a.equivalent(b))
        except UnitError:
            return False
    if isinstance(a, (Code, Concept)) and isinstance(b, (Code, Concept)):
        codes_a = {(c.system, c.code) for c in _codes(a)}
        return any((c.system, c.code) in codes_a for c in _codes(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equivalent(x, y) for x, y in zip(a, b))
    if type(a) is CqlTuple and type(b) is CqlTuple:
        return set(a) == set(b) and all(equivalent(a[k], b[k]) for k in a)
    if isinstance(a, Interval) and isinstance(b, Interval):
        return ((a.low_closed, a.high_closed) == (b.low_closed, b.high_closed)
                and equivalent(a.low, b.low) and equivalent(a.high, b.high))
    result = equal(a, b)
    return bool(result)


def _significant_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _decimal_equivalent(a: Decimal, b: Decimal) -> bool:
    """Equal when rounded to the precision of the less precise operand (trailing zeros carry none)."""
    quantum = Decimal(1).scaleb(-min(_significant_places(a), _significant_places(b)))
    return a.quantize(quantum, rounding=ROUND_HALF_UP) == b.quantize(quantum, rounding=ROUND_HALF_UP)


def _codes(value: Code | Concept) -> tuple[Code, ...]:
    return (value,) if isinstance(value, Code) else value.codes


# ---- three-valued logic --------------------------------------------------------

def logical_and(a: bool | None, b: bool | None) -> bool | None:
    """Three-valued `and`: false if either side is false, else null if either is null."""
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def logical_or(a: bool | None, b: bool | None) -> bool | None:
    """Three-valued `or`: true if either side is true, else null if either is null."""
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def logical_xor(a: bool | None, b: bool | None) -> bool | None:
    """Three-valued `xor`: null if either side is null."""
    if a is None or b is None:
        return None
    return a is not b


def logical_implies(a: bool | None, b: bool | None) -> bool | None:
    """Three-valued `implies`: true when a is false or b is true, else null if either is null."""
    if a is False or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def logical_not(a: bool | None) -> bool | None:
    """Three-valued `not`: null stays null."""
    return None if a is None else not a


# ---- arithmetic ---------------------------------------------------------------

def _common_unit_pair(a: Quantity, b: Quantity) -> tuple[Quantity, Quantity]:
    """Both quantities in the more granular of their units (CQL: 1 'g' + 500 'mg' = 1500 'mg')."""
    if a.unit == b.unit:
        return a, b
    one_a, one_b = Quantity(Decimal(1), a.unit), Quantity(Decimal(1), b.unit)
    if one_a.compare(one_b) <= 0:
        return a, b.convert(a.unit)
    return a.convert(b.unit), b


def add(a: Any, b: Any) -> Any:
    """CQL `+` for numbers, quantities (in the finer unit), strings and Date + time quantity; overflow is null."""
    if a is None or b is None:
        return None
    if type(a) is Decimal and type(b) is Decimal:   # the usual case: what the number branch computes
        return round8(a + b)
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        a, b = _common_unit_pair(a, b)
        return a + b
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    if isinstance(a, date) and isinstance(b, Quantity):
        return shift_date(a, b, 1)
    if is_number(a) and is_number(b):
        return checked_int(a + b) if isinstance(a, int) and isinstance(b, int) else round8(to_decimal(a) + to_decimal(b))
    return as_quantity(a) + as_quantity(b)


def subtract(a: Any, b: Any) -> Any:
    """CQL `-` for numbers, quantities (in the finer unit) and Date - time quantity; overflow is null."""
    if a is None or b is None:
        return None
    if type(a) is Decimal and type(b) is Decimal:   # the usual case: what the number branch computes
        return round8(a - b)
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        a, b = _common_unit_pair(a, b)
        return a - b
    if isinstance(a, date) and isinstance(b, Quantity):
        return shift_date(a, b, -1)
    if is_number(a) and is_number(b):
        return checked_int(a - b) if isinstance(a, int) and isinstance(b, int) else round8(to_decimal(a) - to_decimal(b))
    return as_quantity(a) - as_quantity(b)


def multiply(a: Any, b: Any) -> Any:
    """CQL `*` for numbers and quantities (units multiply); overflow is null."""
    if a is None or b is None:
        return None
    if type(a) is Decimal and type(b) is Decimal:   # the usual case: what the general branch computes
        return round8(a * b)
    if is_number(a) and is_number(b):
        return checked_int(a * b) if isinstance(a, int) and isinstance(b, int) else round8(to_decimal(a) * to_decimal(b))
    return as_quantity(a) * as_quantity(b)


def divide(a: Any, b: Any) -> Any:
    """CQL `/`: always Decimal (or Quantity); division by zero is null, not an error."""
    if a is None or b is None:
        return None
    if is_number(a) and is_number(b):
        if b == 0:
            return None
        return round8(to_decimal(a) / to_decimal(b))
    qb = as_quantity(b)
    if qb.value == 0:
        return None
    result = as_quantity(a) / qb
    return result


def truncated_divide(a: Any, b: Any) -> Any:
    """CQL `div`: quotient truncated toward zero; a zero divisor gives null."""
    if a is None or b is None:
        return None
    if b == 0:
        return None
    if isinstance(a, int) and isinstance(b, int):
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q
    return (to_decimal(a) / to_decimal(b)).to_integral_value(rounding="ROUND_DOWN")


def modulo(a: Any, b: Any) -> Any:
    """CQL `mod`: remainder of truncated division (sign of the dividend); a zero divisor gives null."""
    if a is None or b is None:
        return None
    if b == 0:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return a - b * truncated_divide(a, b)
    return round8(to_decimal(a) - to_decimal(b) * truncated_divide(a, b))


def power(a: Any, b: Any) -> Any:
    """CQL Power: null when the result is not representable (overflow, 0 to a negative power,
    an Integer result that is not whole, a complex root)."""
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        if b < 0:
            return a if a in (1, -1) and b % 2 else (1 if a in (1, -1) else None)
        if abs(a) > 1 and b > 64:
            return None
        return checked_int(a ** b)
    base, exponent = to_decimal(a), to_decimal(b)
    if not exponent.is_finite() or exponent == exponent.to_integral_value():
        return _decimal_power(base, exponent)
    # A fractional exponent costs tens of microseconds (Decimal computes it through ln and exp,
    # correctly rounded); the same operands recur across patients (eGFR from a creatinine ratio),
    # so results are kept by the operands' exact digits and the Decimal context that computed them.
    context = getcontext()
    key = (str(base), str(exponent), context.prec, context.rounding)
    result = _FRACTIONAL_POWERS.get(key, _UNKNOWN)
    if result is _UNKNOWN:
        if len(_FRACTIONAL_POWERS) >= _FRACTIONAL_POWERS_KEPT:
            _FRACTIONAL_POWERS.clear()
        result = _FRACTIONAL_POWERS[key] = _decimal_power(base, exponent)
    return result


_FRACTIONAL_POWERS: dict[tuple, Decimal | None] = {}
_FRACTIONAL_POWERS_KEPT = 4096
_UNKNOWN = object()


def _decimal_power(base: Decimal, exponent: Decimal) -> Decimal | None:
    try:
        return round8(base ** exponent)
    except (DecimalException, ZeroDivisionError, OverflowError):
        return None


def negate(a: Any) -> Any:
    """CQL unary `-`; negating the smallest Integer overflows to null."""
    if a is None:
        return None
    if isinstance(a, Quantity):
        return Quantity(-a.value, a.unit)
    return checked_int(-a) if type(a) is int else -a


def concatenate_ampersand(a: str | None, b: str | None) -> str:
    """`&`: null is treated as the empty string."""
    return ("" if a is None else a) + ("" if b is None else b)


# ---- dates ------------------------------------------------------------------------

def time_unit(quantity: Quantity) -> str:
    """The calendar unit a duration quantity is in; any other unit is a runtime error, not a guess."""
    unit = TIME_UNITS.get(quantity.unit)
    if unit is None:
        raise CqlRuntimeError(f"'{quantity.unit}' is not a time unit; date arithmetic needs year, month, week, day, hour, minute, second or millisecond")
    return unit


def _add_months(d: date | datetime, months: int):
    month_index = d.month - 1 + months
    year = d.year + month_index // 12
    month = month_index % 12 + 1
    if not 1 <= year <= 9999:
        raise CqlRuntimeError("date arithmetic went outside the years 1-9999")
    day = min(d.day, calendar.monthrange(year, month)[1])
    return d.replace(year=year, month=month, day=day)


def shift_date(value: date | datetime, quantity: Quantity, sign: int) -> date | datetime:
    """Date/DateTime +/- a time quantity with CQL calendar semantics (month ends clamp)."""
    unit = time_unit(quantity)
    amount = quantity.value * sign
    whole = int(amount)
    try:
        if unit == "year":
            return _add_months(value, 12 * whole)
        if unit == "month":
            return _add_months(value, whole)
        if unit == "week":
            return value + timedelta(days=7 * whole)
        if unit == "day":
            return value + timedelta(days=whole)
        seconds = amount * _SUBDAY_SECONDS[unit]
        if isinstance(value, datetime):
            return value + timedelta(seconds=float(seconds))
        return value + timedelta(days=int(seconds / 86400))
    except OverflowError:
        raise CqlRuntimeError("date arithmetic went outside the years 1-9999") from None


def whole_periods_between(low: date | datetime | None, high: date | datetime | None,
                          precision: str) -> int | None:
    """`<precision>s between low and high`: whole calendar periods (negative when high < low)."""
    if low is None or high is None:
        return None
    unit = TIME_UNITS[precision]
    if isinstance(low, datetime) or isinstance(high, datetime):
        low, high = as_datetime(low), as_datetime(high)
    if high < low:
        return -whole_periods_between(high, low, precision)
    if unit in ("year", "month"):
        months = (high.year - low.year) * 12 + (high.month - low.month)
        if _rest_of(high) < _rest_of(low):
            months -= 1
        return months // 12 if unit == "year" else months
    delta = high - low
    if isinstance(delta, timedelta):
        if unit == "week":
            return delta.days // 7
        if unit == "day":
            return delta.days
        seconds = Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / 1000000
        return int(seconds / Decimal(_SUBDAY_SECONDS[unit]))
    return None


def _rest_of(value):
    if isinstance(value, datetime):
        return (value.day, value.hour, value.minute, value.second, value.microsecond)
    return (value.day, 0, 0, 0, 0)


def boundaries_between(low: date | datetime | None, high: date | datetime | None,
                       precision: str) -> int | None:
    """`difference in <precision>s between low and high`: period boundaries crossed."""
    if low is None or high is None:
        return None
    unit = TIME_UNITS[precision]
    if isinstance(low, datetime) or isinstance(high, datetime):
        low, high = as_datetime(low), as_datetime(high)
    if unit == "year":
        return high.year - low.year
    if unit == "month":
        return (high.year - low.year) * 12 + high.month - low.month
    low_day = low.date() if isinstance(low, datetime) else low
    high_day = high.date() if isinstance(high, datetime) else high
    if unit == "day":
        return (high_day - low_day).days
    if unit == "week":
        def week_start(d: date) -> date:
            """The Sunday that starts the week of d (CQL weeks begin on Sunday)."""
            return d - timedelta(days=(d.weekday() + 1) % 7)
        return (week_start(high_day) - week_start(low_day)).days // 7
    truncate = {"hour": dict(minute=0, second=0, microsecond=0), "minute": dict(second=0, microsecond=0),
                "second": dict(microsecond=0), "millisecond": {}}[unit]
    delta = high.replace(**truncate) - low.replace(**truncate)
    seconds = Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / 1000000
    return int(seconds / Decimal(_SUBDAY_SECONDS[unit]))


def component_of(value: date | datetime | None, component: str) -> date | int | None:
    """`<component> from value`; hour, minute or second of a Date is null (a Date has no time)."""
    if value is None:
        return None
    if not isinstance(value, date):  # a fact of another type than the model declares
        raise CqlRuntimeError(f"{component} from a value that is not a Date or DateTime")
    if component == "date":
        return value.date() if isinstance(value, datetime) else value
    if component in ("hour", "minute", "second") and not isinstance(value, datetime):
        return None
    return getattr(value, component)


# ---- intervals -------------------------------------------------------------------

def _after_low(point, interval: Interval) -> bool | None:
    if interval.low is None:
        return True if interval.low_closed else None
    c = compare(point, interval.low)
    return c >= 0 if interval.low_closed else c > 0


def _before_high(point, interval: Interval) -> bool | None:
    if interval.high is None:
        return True if interval.high_closed else None
    c = compare(point, interval.high)
    return c <= 0 if interval.high_closed else c < 0


def point_in_interval(point: Any, interval: Interval | None) -> bool | None:
    """`point in interval`; a null closed bound means unbounded, a null open bound means unknown."""
    if point is None or interval is None:
        return None
    return logical_and(_after_low(point, interval), _before_high(point, interval))


def interval_included_in(inner: Interval | None, outer: Interval | None) -> bool | None:
    """`inner included in outer` for intervals, with the same null-bound rules as point_in_interval."""
    if inner is None or outer is None:
        return None
    return logical_and(_low_inside(inner, outer), _high_inside(inner, outer))


def _low_inside(inner: Interval, outer: Interval) -> bool | None:
    if outer.low is None:
        return True if outer.low_closed else None
    if inner.low is None:
        return False if inner.low_closed else None
    c = compare(inner.low, outer.low)
    return c >= 0 if (outer.low_closed or not inner.low_closed) else c > 0


def _high_inside(inner: Interval, outer: Interval) -> bool | None:
    if outer.high is None:
        return True if outer.high_closed else None
    if inner.high is None:
        return False if inner.high_closed else None
    c = compare(inner.high, outer.high)
    return c <= 0 if (outer.high_closed or not inner.high_closed) else c < 0


def overlaps(a: Interval | None, b: Interval | None) -> bool | None:
    """`a overlaps b`: the intervals share at least one point; null if either is null."""
    if a is None or b is None:
        return None
    return logical_and(_starts_before_end(a, b), _starts_before_end(b, a))


def _starts_before_end(a: Interval, b: Interval) -> bool | None:
    """a's low is at or before b's high (respecting open bounds and unbounded nulls)."""
    if a.low is None:
        return True if a.low_closed else None
    if b.high is None:
        return True if b.high_closed else None
    c = compare(a.low, b.high)
    return c <= 0 if a.low_closed and b.high_closed else c < 0


def start_of(value: Interval | None) -> Any:
    """`start of`: the low bound, or null for a null interval."""
    if value is None:
        return None
    return value.low


def end_of(value: Interval | None) -> Any:
    """`end of`: the high bound, or null for a null interval."""
    if value is None:
        return None
    return value.high


def before(a: Any, b: Any) -> bool | None:
    """`a before b` for points and intervals: a ends before b starts."""
    end_a = end_of(a) if isinstance(a, Interval) else a
    start_b = start_of(b) if isinstance(b, Interval) else b
    return less(end_a, start_b)


def after(a: Any, b: Any) -> bool | None:
    """`a after b` for points and intervals: a starts after b ends."""
    start_a = start_of(a) if isinstance(a, Interval) else a
    end_b = end_of(b) if isinstance(b, Interval) else b
    return greater(start_a, end_b)


# ---- lists ---------------------------------------------------------------------------

def list_contains(items: list | None, element: Any) -> bool | None:
    """`element in list` by CQL equality; a null element is in a list holding null;
    a null list gives null (false when the element is null too)."""
    if items is None:
        return False if element is None else None
    if element is None:
        return any(item is None for item in items)
    if type(element) is str:   # a code or status in a list of strings: `equal` of two strings is `==`
        for item in items:
            if type(item) is str:
                if item == element:
                    return True
            elif item is not None and equal(item, element) is True:
                return True
        return False
    for item in items:
        if item is not None and equal(item, element) is True:
            return True
    return False


def distinct(items: list | None) -> list | None:
    """CQL distinct, keeping first occurrences in order.

    Elements are compared only within a bucket of possibly-equal elements (same record id,
    same scalar value, same kind otherwise), so a query returning thousands of records stays
    linear instead of comparing every pair.
    """
    if items is None:
        return None
    if len(items) < 2:   # nothing to compare (most query results)
        return list(items)
    kept: list = []
    buckets: dict[Any, list] = {}
    for item in items:
        bucket = buckets.setdefault(_bucket_key(item), [])
        if item is None:
            if not bucket:
                bucket.append(None)
                kept.append(None)
        elif not any(_same_element(k, item) for k in bucket):
            bucket.append(item)
            kept.append(item)
    return kept


def _bucket_key(item: Any) -> Any:
    """A key equal for any two elements CQL equality could call equal (coarser is allowed)."""
    if item is None:
        return None
    if type(item) is str:   # the usual element of a query's result: the string branch below, at once
        return ("string", item)
    if isinstance(item, Record):
        return ("record", item.type_name, _hashable(item.fields.get("id")))
    if isinstance(item, bool):
        return ("boolean", item)
    if isinstance(item, (int, Decimal)):
        return ("number", item)  # 1 and 1.0 hash alike, as they compare equal
    if isinstance(item, str):
        return ("string", item)
    if isinstance(item, (date, datetime)):
        return ("temporal",)
    return (type(item).__name__,)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return None
    return value


def _same_element(a: Any, b: Any) -> bool:
    """Equality for de-duplication: values that cannot be compared (quantities of incompatible
    units) are simply different elements, never an error."""
    try:
        return equal(a, b) is True
    except (UnitError, CqlRuntimeError):
        return False


def flatten(items: list | None) -> list | None:
    """CQL flatten: one level of nested lists is spliced in; other elements stay."""
    if items is None:
        return None
    out: list = []
    for item in items:
        if isinstance(item, list):
            out.extend(item)
        else:
            out.append(item)
    return out


def union(a: list | None, b: list | None) -> list | None:
    """CQL `union`: both lists without duplicates; null only when both sides are null."""
    if a is None and b is None:
        return None
    return distinct((a or []) + (b or []))


def sort_values(items: list, key: Callable[[Any], Any], descending: bool) -> list:
    """Stable sort; nulls first ascending (last descending), as CQL orders them."""
    return sort_by_keys(items, [key(item) for item in items], descending)


def sort_by_keys(items: list, keys: list, descending: bool) -> list:
    """`items` in the order of their `keys` (one per item, read once): stable, nulls first ascending
    (last descending), keys ordered by `compare`. Keys that Python orders exactly as `compare` does
    (strings; numbers; aware DateTimes; Dates) are sorted by value; any other mix goes through
    `compare`, which also raises for keys that cannot be ordered."""
    if len(items) < 2:
        return list(items)
    if _naturally_ordered(keys):
        nulls_lowest = [(k is not None, k) for k in keys]   # two nulls are equal: None is never ordered
        return [item for _, item in sorted(zip(nulls_lowest, items), key=_FIRST, reverse=descending)]

    def cmp(x: tuple, y: tuple) -> int:
        """Order two (key, item) pairs by key with nulls lowest."""
        kx, ky = x[0], y[0]
        if kx is None or ky is None:
            return (kx is not None) - (ky is not None)
        return compare(kx, ky)
    return [item for _, item in sorted(zip(keys, items), key=cmp_to_key(cmp), reverse=descending)]


_FIRST = itemgetter(0)
_NUMBERS = frozenset({int, Decimal})


def _naturally_ordered(keys: list) -> bool:
    """True when every non-null key is of one kind whose Python order is `compare`'s order."""
    kinds = {type(k) for k in keys}
    kinds.discard(type(None))
    if not kinds or kinds == {str} or kinds <= _NUMBERS or kinds == {date}:
        return True
    return kinds == {datetime} and all(k is None or k.tzinfo is not None for k in keys)


# ---- misc -----------------------------------------------------------------------------

def type_label(value: Any) -> str:
    """The CQL type name of a runtime value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, Decimal):
        return "Decimal"
    if isinstance(value, str):
        return "String"
    if isinstance(value, Quantity):
        return f"Quantity '{value.unit}'"
    if isinstance(value, datetime):
        return "DateTime"
    if isinstance(value, date):
        return "Date"
    if isinstance(value, Record):
        return value.type_name
    if isinstance(value, list):
        return "List"
    if isinstance(value, Interval):
        return "Interval"
    if type(value) is CqlTuple:
        return "Tuple"
    return type(value).__name__


_DATETIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?(Z|[+-]\d{2}:\d{2})?)?$")


def parse_date(text: str) -> date | None:
    """'YYYY-MM-DD' text as a date; text with a time part or an impossible date is None."""
    match = _DATETIME_RE.match(text)
    if not match or match.group(4) is not None:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def parse_datetime(text: str) -> datetime | None:
    """ISO text -> aware datetime; no offset means UTC (the engine's evaluation offset)."""
    match = _DATETIME_RE.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        tz = timezone.utc
        if offset and offset != "Z":
            sign = 1 if offset[0] == "+" else -1
            tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        return datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro,
                        tzinfo=tz)
    except ValueError:
        return None
