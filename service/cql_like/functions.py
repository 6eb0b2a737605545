"""The function registry: every callable name with its declared signature.

A signature is checked when a library loads (unknown name, wrong arity or
argument type is a compile error), so a patient's request never meets one.
Each entry says how the result's evidence is gathered: `reads` (every record
in the list argument was read, e.g. Count) or `picks` (the record returned,
e.g. First).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, DecimalException
from typing import Any, Callable

from . import operators as ops
from . import regex_guard
from . import types as T
from .errors import CqlRuntimeError, SignatureMismatch
from .quantity import IncompatibleUnitsError, Quantity
from .values import Code, Concept


Resolver = Callable[[list[T.CqlType]], T.CqlType]


@dataclass(frozen=True)
class FunctionSpec:
    """One built-in: how its call is type-checked, evaluated and how evidence is gathered from it."""
    name: str
    signature: str            # human-readable, for docs and error messages
    resolve: Resolver         # argument types -> result type, or raises SignatureMismatch
    impl: Callable[..., Any]
    propagates_null: bool = True   # any null argument -> null without calling impl
    evidence: str = "none"         # none | reads | picks
    needs_context: bool = False    # impl(ctx, *args)


REGISTRY: dict[str, FunctionSpec] = {}


def register(name: str, signature: str, resolve: Resolver, *, propagates_null: bool = True,
             evidence: str = "none", needs_context: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator adding a built-in to REGISTRY under `name`; the decorated function is returned unchanged."""
    def wrap(impl: Callable[..., Any]) -> Callable[..., Any]:
        """Store the implementation in REGISTRY and hand it back."""
        REGISTRY[name] = FunctionSpec(name, signature, resolve, impl, propagates_null, evidence, needs_context)
        return impl
    return wrap


# ---- signature helpers --------------------------------------------------------------

def _arity(args: list[T.CqlType], low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not low <= len(args) <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise SignatureMismatch(f"expects {expected} argument(s), got {len(args)}")


def _element(t: T.CqlType, position: int = 1) -> T.CqlType:
    if t == T.ANY:
        return T.ANY
    if isinstance(t, T.ListType):
        return t.element
    raise SignatureMismatch(f"argument {position} must be a List, got {t}", expected="List", found=str(t))


def _expect(t: T.CqlType, allowed: tuple[T.CqlType, ...], position: int) -> None:
    if not any(T.assignable(t, a) for a in allowed):
        names = " or ".join(str(a) for a in allowed)
        raise SignatureMismatch(f"argument {position} must be {names}, got {t}", expected=names, found=str(t))


def fixed(params: tuple[tuple[T.CqlType, ...], ...], result: T.CqlType, optional: int = 0) -> Resolver:
    """Positional parameters, each allowing one of several types; the last `optional` may be omitted."""
    def resolve(args: list[T.CqlType]) -> T.CqlType:
        """Result type for these argument types; raises SignatureMismatch naming the wrong argument."""
        _arity(args, len(params) - optional, len(params))
        for i, (arg, allowed) in enumerate(zip(args, params), start=1):
            _expect(arg, allowed, i)
        return result
    return resolve


def list_to_element(*allowed: T.CqlType) -> Resolver:
    """One list argument (elements of the allowed types, if any given); the result is the element type."""
    return list_to(None, *allowed)


def list_to(result: T.CqlType | None, *allowed: T.CqlType) -> Resolver:
    """One list argument (elements of the allowed types, if any given); the result is always `result`
    (None: the list's element type)."""
    def resolve(args: list[T.CqlType]) -> T.CqlType:
        """The result type, after checking arity and element type."""
        _arity(args, 1)
        element = _element(args[0])
        if allowed and element != T.ANY:
            _expect(element, allowed, 1)
        return element if result is None else result
    return resolve


def same_as_first(*allowed: T.CqlType, arity: tuple[int, int] = (1, 1)) -> Resolver:
    """First argument of one of the allowed types; the result has that argument's type (e.g. Abs)."""
    def resolve(args: list[T.CqlType]) -> T.CqlType:
        """The first argument's type, after checking arity and that type."""
        _arity(args, *arity)
        _expect(args[0], allowed, 1)
        return args[0]
    return resolve


NUMERIC = (T.INTEGER, T.DECIMAL)
NUM_OR_QTY = (T.INTEGER, T.DECIMAL, T.QUANTITY)
ORDERED = T.ORDERED


# ---- aggregates -------------------------------------------------------------------

@register("First", "First(List<T>) -> T", list_to_element(), evidence="picks")
def _first(items):
    return items[0] if items else None


@register("Last", "Last(List<T>) -> T", list_to_element(), evidence="picks")
def _last(items):
    return items[-1] if items else None


@register("Count", "Count(List<T>) -> Integer", list_to(T.INTEGER), propagates_null=False, evidence="reads")
def _count(items):
    return 0 if items is None else sum(1 for item in items if item is not None)


@register("Exists", "Exists(List<T>) -> Boolean", list_to(T.BOOLEAN), propagates_null=False, evidence="reads")
def _exists(items):
    return False if items is None else any(item is not None for item in items)


def _extreme(items, pick_greater: bool):
    best = None
    for item in items:
        if item is None:
            continue
        if best is None or (ops.compare(item, best) > 0) == pick_greater and ops.compare(item, best) != 0:
            best = item
    return best


@register("Max", "Max(List<T>) -> T, T ordered", list_to_element(*ORDERED), evidence="reads")
def _max(items):
    return _extreme(items, True)


@register("Min", "Min(List<T>) -> T, T ordered", list_to_element(*ORDERED), evidence="reads")
def _min(items):
    return _extreme(items, False)


@register("Sum", "Sum(List<Integer|Decimal|Quantity>) -> same", list_to_element(*NUM_OR_QTY), evidence="reads")
def _sum(items):
    total = None
    for item in items:
        if item is not None:
            total = item if total is None else ops.add(total, item)
    return total


def _avg_type(args):
    element = list_to_element(*NUM_OR_QTY)(args)
    return T.DECIMAL if element == T.INTEGER else element


@register("Avg", "Avg(List<Integer|Decimal|Quantity>) -> Decimal|Quantity", _avg_type, evidence="reads")
def _avg(items):
    present = [item for item in items if item is not None]
    if not present:
        return None
    return ops.divide(_sum(present), len(present))


@register("AllTrue", "AllTrue(List<Boolean>) -> Boolean", list_to(T.BOOLEAN, T.BOOLEAN), propagates_null=False,
          evidence="reads")
def _all_true(items):
    return True if items is None else all(item is not False for item in items)


@register("AnyTrue", "AnyTrue(List<Boolean>) -> Boolean", list_to(T.BOOLEAN, T.BOOLEAN), propagates_null=False,
          evidence="reads")
def _any_true(items):
    return False if items is None else any(item is True for item in items)


def _same_list(args):
    _arity(args, 1)
    _element(args[0])
    return args[0]


@register("Distinct", "Distinct(List<T>) -> List<T>", _same_list)
def _distinct(items):
    return ops.distinct(items)


def _flatten_type(args):
    _arity(args, 1)
    element = _element(args[0])
    return T.list_of(_element(element)) if element != T.ANY else T.list_of(T.ANY)


@register("Flatten", "Flatten(List<List<T>>) -> List<T>", _flatten_type)
def _flatten(items):
    return ops.flatten(items)


def _coalesce_type(args):
    if not args:
        raise SignatureMismatch("expects at least 1 argument")
    if len(args) == 1:
        return _element(args[0])
    result = T.ANY
    for i, arg in enumerate(args, start=1):
        common = T.common_type(result, arg)
        if common is None:
            raise SignatureMismatch(f"argument {i} is {arg}, but earlier arguments are {result}")
        result = common
    return result


@register("Coalesce", "Coalesce(T, T, ...) -> T | Coalesce(List<T>) -> T", _coalesce_type, propagates_null=False,
          evidence="picks")
def _coalesce(*args):
    values = args[0] if len(args) == 1 else args
    if values is None:
        return None
    for value in values:
        if value is not None:
            return value
    return None


# ---- clock and age ------------------------------------------------------------------

@register("Today", "Today() -> Date", fixed((), T.DATE), needs_context=True)
def _today(ctx):
    return ctx.now.date()


@register("Now", "Now() -> DateTime", fixed((), T.DATETIME), needs_context=True)
def _now(ctx):
    return ctx.now


def _birth_date(ctx):
    patient = ctx.patient()
    if patient is None:
        return None
    if patient.source:
        ctx.ev.add(patient.source)
    return patient.get("birthDate")


@register("AgeInYears", "AgeInYears() -> Integer", fixed((), T.INTEGER), needs_context=True)
def _age_years(ctx):
    return ops.whole_periods_between(_birth_date(ctx), ctx.now.date(), "years")


@register("AgeInMonths", "AgeInMonths() -> Integer", fixed((), T.INTEGER), needs_context=True)
def _age_months(ctx):
    return ops.whole_periods_between(_birth_date(ctx), ctx.now.date(), "months")


@register("AgeInDays", "AgeInDays() -> Integer", fixed((), T.INTEGER), needs_context=True)
def _age_days(ctx):
    return ops.whole_periods_between(_birth_date(ctx), ctx.now.date(), "days")


@register("AgeInYearsAt", "AgeInYearsAt(Date|DateTime) -> Integer", fixed(((T.DATE, T.DATETIME),), T.INTEGER),
          needs_context=True)
def _age_years_at(ctx, when):
    born = _birth_date(ctx)
    return ops.whole_periods_between(born, when if isinstance(born, datetime) or not isinstance(when, datetime)
                                     else when.date(), "years")


@register("CalculateAgeInYearsAt", "CalculateAgeInYearsAt(Date, Date) -> Integer",
          fixed(((T.DATE, T.DATETIME), (T.DATE, T.DATETIME)), T.INTEGER))
def _calc_age_years_at(born, when):
    return ops.whole_periods_between(born, when, "years")


# ---- conversions ---------------------------------------------------------------------

_DECIMAL_TEXT = re.compile(r"^[+-]?\d+(\.\d+)?$")
_QUANTITY_TEXT = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*(?:'([^']+)')?$")


@register("ToDecimal", "ToDecimal(Integer|Decimal|String) -> Decimal", fixed(((T.DECIMAL, T.STRING),), T.DECIMAL))
def _to_decimal(value):
    if isinstance(value, str):
        return ops.round8(Decimal(value.strip())) if _DECIMAL_TEXT.match(value.strip()) else None
    return ops.to_decimal(value)


@register("ToInteger", "ToInteger(Integer|String) -> Integer", fixed(((T.INTEGER, T.STRING),), T.INTEGER))
def _to_integer(value):
    if isinstance(value, str):
        return ops.checked_int(int(value)) if re.fullmatch(r"[+-]?\d{1,12}", value.strip()) else None
    return value


@register("ToString", "ToString(T) -> String", fixed(((T.ANY,),), T.STRING))
def _to_string(value):
    from .formatting import to_string
    return to_string(value)


@register("ToQuantity", "ToQuantity(Integer|Decimal|String) -> Quantity", fixed(((T.DECIMAL, T.STRING),), T.QUANTITY))
def _to_quantity(value):
    if isinstance(value, str):
        match = _QUANTITY_TEXT.match(value.strip())
        if not match:
            return None
        return Quantity(Decimal(match.group(1)), match.group(2) or "1")
    return Quantity(ops.to_decimal(value), "1")


@register("ConvertQuantity", "ConvertQuantity(Quantity, String) -> Quantity",
          fixed(((T.QUANTITY,), (T.STRING,)), T.QUANTITY))
def _convert_quantity(quantity, unit):
    try:
        return quantity.convert(unit)
    except IncompatibleUnitsError:
        return None  # CQL: a conversion that is not possible is null


@register("ToDate", "ToDate(String|Date|DateTime) -> Date", fixed(((T.STRING, T.DATETIME),), T.DATE))
def _to_date(value):
    if isinstance(value, str):
        return ops.parse_date(value.strip())
    return value.date() if isinstance(value, datetime) else value


@register("ToDateTime", "ToDateTime(String|Date|DateTime) -> DateTime", fixed(((T.STRING, T.DATETIME),), T.DATETIME))
def _to_datetime(value):
    if isinstance(value, str):
        return ops.parse_datetime(value.strip())
    return ops.as_datetime(value)


@register("ToConcept", "ToConcept(Code) -> Concept", fixed(((T.CODE,),), T.CONCEPT))
def _to_concept(value):
    return Concept((value,)) if isinstance(value, Code) else value


@register("Date", "Date(Integer, Integer, Integer) -> Date", fixed(((T.INTEGER,),) * 3, T.DATE))
def _date(year, month, day):
    try:
        return date(year, month, day)
    except (ValueError, OverflowError):
        raise CqlRuntimeError(f"invalid date: Date({year}, {month}, {day}) is not a calendar date") from None


@register("DateTime", "DateTime(Integer year, month, day[, hour, minute, second, millisecond][, Decimal offset]) -> DateTime",
          fixed(((T.INTEGER,),) * 7 + ((T.DECIMAL,),), T.DATETIME, optional=5), propagates_null=False)
def _datetime(year, month, day, hour=0, minute=0, second=0, millisecond=0, offset=None):
    if year is None or month is None or day is None:
        return None
    if millisecond is not None and not 0 <= millisecond <= 999:
        raise CqlRuntimeError(f"invalid datetime: millisecond {millisecond} is not between 0 and 999")
    if offset is not None and not -14 <= offset <= 14:
        raise CqlRuntimeError(f"invalid datetime: offset {offset} is not between -14 and 14 hours")
    tz = timezone.utc if offset is None else timezone(timedelta(hours=float(offset)))
    try:
        return datetime(year, month, day, hour or 0, minute or 0, second or 0, (millisecond or 0) * 1000, tzinfo=tz)
    except (ValueError, OverflowError):
        raise CqlRuntimeError(f"invalid datetime: DateTime({year}, {month}, {day}, {hour}, {minute}, {second}) "
                                  "is not a calendar date and time") from None


# ---- arithmetic functions ---------------------------------------------------------------

@register("Round", "Round(Decimal[, Integer precision]) -> Decimal",
          fixed(((T.DECIMAL,), (T.INTEGER,)), T.DECIMAL, optional=1))
def _round(value, precision=0):
    precision = precision or 0
    if not 0 <= precision <= 8:
        raise CqlRuntimeError(f"Round precision {precision} is not between 0 and 8 (Decimals keep 8 places)")
    return ops.round8(ops.to_decimal(value).quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_UP))


@register("Abs", "Abs(Integer|Decimal|Quantity) -> same", same_as_first(*NUM_OR_QTY))
def _abs(value):
    if isinstance(value, Quantity):
        return Quantity(abs(value.value), value.unit)
    return ops.checked_int(abs(value)) if type(value) is int else abs(value)


@register("Floor", "Floor(Decimal) -> Integer", fixed(((T.DECIMAL,),), T.INTEGER))
def _floor(value):
    return ops.checked_int(int(ops.to_decimal(value).to_integral_value(rounding=ROUND_FLOOR)))


@register("Ceiling", "Ceiling(Decimal) -> Integer", fixed(((T.DECIMAL,),), T.INTEGER))
def _ceiling(value):
    return ops.checked_int(int(ops.to_decimal(value).to_integral_value(rounding=ROUND_CEILING)))


@register("Truncate", "Truncate(Decimal) -> Integer", fixed(((T.DECIMAL,),), T.INTEGER))
def _truncate(value):
    return ops.checked_int(int(ops.to_decimal(value)))


@register("Ln", "Ln(Decimal) -> Decimal", fixed(((T.DECIMAL,),), T.DECIMAL))
def _ln(value):
    if value <= 0:
        return None
    return ops.round8(ops.to_decimal(value).ln())


@register("Exp", "Exp(Decimal) -> Decimal", fixed(((T.DECIMAL,),), T.DECIMAL))
def _exp(value):
    try:
        return ops.round8(ops.to_decimal(value).exp())
    except (DecimalException, OverflowError):
        return None


@register("Log", "Log(Decimal, Decimal base) -> Decimal", fixed(((T.DECIMAL,), (T.DECIMAL,)), T.DECIMAL))
def _log(value, base):
    if value <= 0 or base <= 0 or base == 1:
        return None
    return ops.round8(ops.to_decimal(value).ln() / ops.to_decimal(base).ln())


def _power_type(args):
    _arity(args, 2)
    _expect(args[0], NUMERIC, 1)
    _expect(args[1], NUMERIC, 2)
    return T.INTEGER if args[0] == args[1] == T.INTEGER else T.DECIMAL


@register("Power", "Power(Integer|Decimal, Integer|Decimal) -> Integer|Decimal", _power_type)
def _power(value, exponent):
    return ops.power(value, exponent)


# ---- strings ----------------------------------------------------------------------------

def _length_type(args):
    _arity(args, 1)
    if not (args[0] in (T.STRING, T.ANY) or isinstance(args[0], T.ListType)):
        raise SignatureMismatch(f"argument 1 must be String or List, got {args[0]}", expected="String or List",
                                found=str(args[0]))
    return T.INTEGER


@register("Length", "Length(String|List<T>) -> Integer", _length_type)
def _length(value):
    return len(value)


@register("Upper", "Upper(String) -> String", fixed(((T.STRING,),), T.STRING))
def _upper(value):
    return value.upper()


@register("Lower", "Lower(String) -> String", fixed(((T.STRING,),), T.STRING))
def _lower(value):
    return value.lower()


@register("StartsWith", "StartsWith(String, String prefix) -> Boolean", fixed(((T.STRING,), (T.STRING,)), T.BOOLEAN))
def _starts_with(value, prefix):
    return value.startswith(prefix)


@register("EndsWith", "EndsWith(String, String suffix) -> Boolean", fixed(((T.STRING,), (T.STRING,)), T.BOOLEAN))
def _ends_with(value, suffix):
    return value.endswith(suffix)


@register("Matches", "Matches(String, String regex) -> Boolean", fixed(((T.STRING,), (T.STRING,)), T.BOOLEAN))
def _matches(value, pattern):
    return regex_guard.matches(value, pattern)


@register("ReplaceMatches", "ReplaceMatches(String, String regex, String substitution) -> String",
          fixed(((T.STRING,), (T.STRING,), (T.STRING,)), T.STRING))
def _replace_matches(value, pattern, substitution):
    return regex_guard.replace_matches(value, pattern, substitution)


@register("PositionOf", "PositionOf(String pattern, String) -> Integer", fixed(((T.STRING,), (T.STRING,)), T.INTEGER))
def _position_of(pattern, value):
    return value.find(pattern)


@register("Substring", "Substring(String, Integer start[, Integer length]) -> String",
          fixed(((T.STRING,), (T.INTEGER,), (T.INTEGER,)), T.STRING, optional=1))
def _substring(value, start, length=None):
    if start < 0 or start >= len(value):
        return None
    return value[start:] if length is None else value[start:start + max(length, 0)]


@register("Combine", "Combine(List<String>[, String separator]) -> String",
          fixed(((T.list_of(T.STRING),), (T.STRING,)), T.STRING, optional=1))
def _combine(items, separator=""):
    return (separator or "").join(item for item in items if item is not None)


@register("Split", "Split(String, String separator) -> List<String>",
          fixed(((T.STRING,), (T.STRING,)), T.list_of(T.STRING)))
def _split(value, separator):
    return value.split(separator) if separator else [value]


def describe() -> list[str]:
    """Every registered signature, sorted (for docs and `rules check --list`)."""
    return sorted(spec.signature for spec in REGISTRY.values())
