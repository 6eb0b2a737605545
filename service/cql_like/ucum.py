"""UCUM unit parsing, dimensional analysis and unit algebra for cql_like quantities.

Units are compared by dimension (a vector of integer exponents over base
dimensions) and converted with exact rational factors taken from
`data/ucum_units.json`, so 1 g/dL is exactly 10 g/L. Two choices differ from
plain UCUM on purpose, for clinical safety:

* `mol` and `eq` are base dimensions of their own: mmol/L never converts to
  mg/dL (that needs an analyte's molar mass) and meq/L never converts to
  mmol/L (that needs a valence). Such conversions belong to the service's
  terminology tables, not here.
* Every arbitrary unit ([IU], [arb'U], [pH], ...) is a dimension of its own,
  so it only ever converts to itself (with prefixes and other factors).

The CQL calendar keywords (year(s), month(s), week(s), day(s), hour(s),
minute(s), second(s), millisecond(s)) are accepted as time units with the
UCUM averages (year = a = 365.25 d, month = mo = a/12) for unit conversion
only; calendar arithmetic on dates is the evaluator's job.

Special units needing an offset (Cel, [degF]) parse, but only alone, and they
never convert to another unit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping

from .errors import IncompatibleUnitsError, UnitError, UnknownUnitError

__all__ = [
    "UnitError",
    "UnknownUnitError",
    "IncompatibleUnitsError",
    "Unit",
    "parse_unit",
    "is_valid_unit",
    "units_compatible",
    "conversion_factor",
    "multiply_units",
    "divide_units",
    "describe_dimension",
    "dimension_symbols",
]

UNIT_TABLE_PATH = Path(__file__).with_name("data") / "ucum_units.json"

# Characters that end a unit symbol outside square brackets.
_SYMBOL_STOPS = frozenset("./(){}+-0123456789")
_OPERATION_PREPOSITIONS = {"compare": "with", "convert": "to", "add": "and", "subtract": "and"}


@dataclass(frozen=True, slots=True)
class Unit:
    """A parsed UCUM unit.

    `factor` is the magnitude relative to the base units of its dimension
    (mg/dL -> 0.01 g/L expressed in base units, i.e. 10 g.m-3); `dimension`
    holds exponents in the order of `dimension_symbols()`. `terms` keeps the
    unit's flattened product of (symbol, annotation, exponent) for unit
    algebra; `offset` is set only for special units such as Cel.
    """

    text: str
    factor: Decimal
    dimension: tuple[int, ...]
    is_arbitrary: bool
    exact_factor: Fraction = field(compare=False, repr=False)
    terms: tuple[tuple[str, str, int], ...] = field(compare=False, repr=False, default=())
    offset: Fraction | None = field(compare=False, repr=False, default=None)

    @property
    def is_dimensionless(self) -> bool:
        """True when every base-unit exponent is zero (e.g. '1', '%', '{ratio}')."""
        return not any(self.dimension)

    @property
    def is_special(self) -> bool:
        """True for units whose conversion needs an offset (Cel, [degF])."""
        return self.offset is not None


# ---------------------------------------------------------------------------
# Unit table


@dataclass(frozen=True, slots=True)
class _Atom:
    factor: Fraction
    dimension: tuple[int, ...]
    metric: bool
    offset: Fraction | None = None


@dataclass(slots=True)
class _Parsed:
    """An intermediate parse result: exact factor, dimension, flattened terms."""

    factor: Fraction
    dimension: list[int]
    terms: dict[tuple[str, str], int]
    offset: Fraction | None = None
    special_symbol: str | None = None

    def combine(self, other: "_Parsed", sign: int) -> "_Parsed":
        """This unit multiplied (sign 1) or divided (sign -1) by another; terms with exponent 0 drop out."""
        terms = dict(self.terms)
        for key, exponent in other.terms.items():
            terms[key] = terms.get(key, 0) + sign * exponent
        return _Parsed(
            self.factor * other.factor ** sign,
            [a + sign * b for a, b in zip(self.dimension, other.dimension)],
            {k: e for k, e in terms.items() if e != 0},
            self.offset if self.offset is not None else other.offset,
            self.special_symbol or other.special_symbol,
        )


class _UnitTable:
    """The data file, indexed, with every derived unit resolved to an exact factor and dimension."""

    def __init__(self, data: Mapping) -> None:
        self.base_symbols: list[str] = [b["symbol"] for b in data["base_units"]]
        self.base_names: dict[str, str] = {b["symbol"]: b["dimension"] for b in data["base_units"]}
        self.arbitrary_symbols: list[str] = list(data["arbitrary_units"])
        self.dimension_symbols: tuple[str, ...] = tuple(self.base_symbols + self.arbitrary_symbols)
        self.prefixes: dict[str, Fraction] = {p: Fraction(v) for p, v in data["prefixes"].items()}
        self.atoms: dict[str, _Atom] = {}
        size = len(self.dimension_symbols)
        for index, symbol in enumerate(self.dimension_symbols):
            vector = [0] * size
            vector[index] = 1
            metric = True if symbol in self.base_names else bool(data["arbitrary_units"][symbol]["metric"])
            self.atoms[symbol] = _Atom(Fraction(1), tuple(vector), metric)
        self._pending: dict[str, dict] = dict(data["derived_units"])
        self._pending.update({k: {**v, "metric": False} for k, v in data["special_units"].items()})
        self._resolving: set[str] = set()
        self.hints = [(re.compile(h["pattern"]), h["replacement"]) for h in data["spelling_hints"]]
        # Resolve everything now: the table is read-only afterwards, hence safe to share between threads.
        for symbol in list(self._pending):
            self.atom(symbol)
        self.dimension_names: dict[tuple[int, ...], str] = {}
        for spec in data["dimension_names"]:
            dimension = tuple(_Parser(spec["unit"], self).parse().dimension)
            self.dimension_names.setdefault(dimension, spec["name"])

    def atom(self, symbol: str) -> _Atom | None:
        """The resolved atom for a symbol without prefix, resolving derived units on first use; None if unknown."""
        found = self.atoms.get(symbol)
        if found is not None or symbol not in self._pending:
            return found
        if symbol in self._resolving:
            raise RuntimeError(f"unit table defines {symbol!r} in terms of itself")
        spec = self._pending[symbol]
        self._resolving.add(symbol)
        try:
            parsed = _Parser(spec["unit"], self).parse()
        finally:
            self._resolving.discard(symbol)
        offset = Fraction(spec["offset"]) if "offset" in spec else None
        atom = _Atom(Fraction(spec["value"]) * parsed.factor, tuple(parsed.dimension), bool(spec["metric"]), offset)
        self.atoms[symbol] = atom
        return atom


@lru_cache(maxsize=1)
def _table() -> _UnitTable:
    with UNIT_TABLE_PATH.open(encoding="utf-8") as handle:
        return _UnitTable(json.load(handle))


# ---------------------------------------------------------------------------
# Parser (UCUM grammar: main = '/' term | term; term = component (('.'|'/') component)*;
# component = annotatable annotation? | annotation | factor | '(' term ')')


class _Parser:
    """Recursive-descent parser for one UCUM unit string; each method reads one production from `pos`."""
    def __init__(self, text: str, table: _UnitTable) -> None:
        self.text = text
        self.table = table
        self.pos = 0

    def fail(self, position: int, fragment: str, reason: str) -> UnknownUnitError:
        """The error to raise for `fragment` at `position`, with the reason shown to the rule author."""
        return UnknownUnitError(self.text, position, fragment, reason)

    def unit_one(self) -> _Parsed:
        """The unit 1: factor 1, no dimension, no terms."""
        return _Parsed(Fraction(1), [0] * len(self.table.dimension_symbols), {})

    def parse(self) -> _Parsed:
        """main = '/' term | term, consuming the whole text."""
        if self.text == "":
            raise self.fail(0, "", "empty unit")
        if self.text.startswith("/"):
            self.pos = 1
            result = self.unit_one().combine(self.term(), -1)
        else:
            result = self.term()
        if self.pos < len(self.text):
            char = self.text[self.pos]
            raise self.fail(self.pos, char, f"unexpected character {char!r}")
        return result

    def term(self) -> _Parsed:
        """term = component (('.' | '/') component)*."""
        result = self.component()
        while self.pos < len(self.text) and self.text[self.pos] in "./":
            sign = 1 if self.text[self.pos] == "." else -1
            self.pos += 1
            result = result.combine(self.component(), sign)
        return result

    def component(self) -> _Parsed:
        """component = annotatable annotation? | annotation | factor | '(' term ')'."""
        if self.pos >= len(self.text):
            raise self.fail(self.pos, "", "unit symbol expected after operator")
        char = self.text[self.pos]
        if char == "(":
            start = self.pos
            self.pos += 1
            inner = self.term()
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                raise self.fail(start, "(", "unclosed parenthesis")
            self.pos += 1
            return inner
        if char == "{":
            annotation = self.annotation()
            result = self.unit_one()
            result.terms[("", annotation)] = 1
            return result
        if char.isdigit() and not self.text.startswith(("10*", "10^"), self.pos):
            return self.factor()
        return self.annotatable()

    def factor(self) -> _Parsed:
        """A positive integer factor (e.g. the 24 of 'mg/(24.h)'), which must end at an operator or ')'."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos].isdigit():
            self.pos += 1
        digits = self.text[start:self.pos]
        if self.pos < len(self.text) and self.text[self.pos] not in "./)":
            raise self.fail(start, digits, f"number {digits!r} must be followed by '.', '/' or ')'")
        if int(digits) == 0:
            raise self.fail(start, digits, "a unit factor must be a positive integer")
        result = self.unit_one()
        result.factor = Fraction(int(digits))
        if int(digits) != 1:
            result.terms[(str(int(digits)), "")] = 1
        return result

    def annotation(self) -> str:
        """A `{...}` annotation of printable ASCII; it has no effect on the unit's value."""
        start = self.pos
        end = self.text.find("}", start)
        if end < 0:
            raise self.fail(start, self.text[start:], "unclosed annotation '{'")
        for offset, char in enumerate(self.text[start + 1:end], start + 1):
            if not 33 <= ord(char) <= 126 or char == "{":
                raise self.fail(offset, char, f"character {char!r} is not allowed in an annotation")
        self.pos = end + 1
        return self.text[start:end + 1]

    def symbol(self) -> tuple[int, str]:
        """The next unit symbol (brackets such as [iU] kept whole) and where it starts."""
        start = self.pos
        if self.text.startswith(("10*", "10^"), self.pos):
            self.pos += 3
            return start, self.text[start:self.pos]
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "[":
                close = self.text.find("]", self.pos)
                if close < 0:
                    raise self.fail(self.pos, self.text[self.pos:], "unclosed '['")
                self.pos = close + 1
                continue
            if char in _SYMBOL_STOPS:
                break
            if char == "]" or not 33 <= ord(char) <= 126:
                end = self.pos + 1
                while end < len(self.text) and self.text[end] not in _SYMBOL_STOPS:
                    end += 1
                fragment = self.text[start:end]
                reason = (f"character {char!r} is not allowed in a UCUM unit" if char != "]"
                          else "unmatched ']'")
                raise self.fail(self.pos, fragment, f"unknown unit {fragment!r}: {reason}")
            self.pos += 1
        if self.pos == start:
            char = self.text[self.pos] if self.pos < len(self.text) else ""
            raise self.fail(start, char, "unit symbol expected" + (f", found {char!r}" if char else ""))
        return start, self.text[start:self.pos]

    def exponent(self) -> int:
        """An optional signed integer exponent after a symbol; 1 when absent."""
        start = self.pos
        if self.pos < len(self.text) and self.text[self.pos] in "+-":
            self.pos += 1
        digits_start = self.pos
        while self.pos < len(self.text) and self.text[self.pos].isdigit():
            self.pos += 1
        if self.pos == digits_start:
            if digits_start > start:
                raise self.fail(start, self.text[start:self.pos], "sign without exponent digits")
            return 1
        return int(self.text[start:self.pos])

    def annotatable(self) -> _Parsed:
        """A symbol with its exponent and annotation; special units (Cel, [degF]) must stand alone."""
        start, symbol = self.symbol()
        atom = self.lookup(symbol, start)
        exponent = self.exponent()
        annotation = self.annotation() if self.pos < len(self.text) and self.text[self.pos] == "{" else ""
        if atom.offset is not None:
            alone = start == 0 and self.pos == len(self.text) and exponent == 1
            if not alone:
                raise self.fail(start, symbol, f"special unit {symbol!r} needs an offset and can only be used alone")
        result = self.unit_one()
        result.factor = atom.factor ** exponent
        result.dimension = [d * exponent for d in atom.dimension]
        result.terms[(symbol, annotation)] = exponent
        if atom.offset is not None:
            result.offset = atom.offset
            result.special_symbol = symbol
        return result

    def lookup(self, symbol: str, start: int) -> _Atom:
        """The atom for a symbol, trying metric prefixes when it is not a unit itself; raises for unknown units."""
        atom = self.table.atom(symbol)
        if atom is not None:
            return atom
        for length in (2, 1):
            prefix, rest = symbol[:length], symbol[length:]
            if prefix in self.table.prefixes and rest:
                base = self.table.atom(rest)
                if base is not None and base.metric:
                    return _Atom(self.table.prefixes[prefix] * base.factor, base.dimension, True, base.offset)
        raise self.fail(start, symbol, f"unknown unit {symbol!r}")


# ---------------------------------------------------------------------------
# Public API


@lru_cache(maxsize=2048)
def parse_unit(text: str) -> Unit:
    """Parse a UCUM unit (or CQL calendar keyword); raises UnknownUnitError with a position."""
    if not isinstance(text, str):
        raise TypeError(f"unit must be a string, not {type(text).__name__}")
    table = _table()
    try:
        parsed = _Parser(text, table).parse()
    except UnknownUnitError as error:
        hint = _spelling_hint(text, table)
        if hint is None:
            raise
        raise UnknownUnitError(error.unit_text, error.position, error.fragment, error.reason, hint) from None
    arbitrary_start = len(table.base_symbols)
    return Unit(
        text=text,
        factor=_fraction_to_decimal(parsed.factor),
        dimension=tuple(parsed.dimension),
        is_arbitrary=any(parsed.dimension[arbitrary_start:]),
        exact_factor=parsed.factor,
        terms=tuple((symbol, annotation, exponent) for (symbol, annotation), exponent in parsed.terms.items()),
        offset=parsed.offset,
    )


def is_valid_unit(text: object) -> bool:
    """True when `text` parses as a supported UCUM unit."""
    if not isinstance(text, str):
        return False
    try:
        parse_unit(text)
    except UnitError:
        return False
    return True


def units_compatible(left: str | Unit, right: str | Unit) -> bool:
    """True when a quantity in `left` can be converted into `right`."""
    try:
        conversion_factor(left, right)
    except UnitError:
        return False
    return True


def conversion_factor(source: str | Unit, target: str | Unit, *, operation: str = "convert") -> Fraction:
    """The exact ratio r such that (value 'source') == (value * r 'target').

    Raises IncompatibleUnitsError (message naming both units and their kinds)
    when the dimensions differ or an offset would be needed; `operation` only
    words that message ("compare", "add", ...).
    """
    source_unit = source if isinstance(source, Unit) else parse_unit(source)
    target_unit = target if isinstance(target, Unit) else parse_unit(target)
    if source_unit.text == target_unit.text:
        return Fraction(1)
    if source_unit.dimension != target_unit.dimension:
        raise _incompatible(operation, source_unit, target_unit)
    if source_unit.is_special or target_unit.is_special:
        preposition = _OPERATION_PREPOSITIONS.get(operation, "and")
        raise IncompatibleUnitsError(
            f"cannot {operation} '{source_unit.text}' {preposition} '{target_unit.text}': "
            "the conversion needs an offset, which quantities do not support",
            source_unit.text, target_unit.text)
    return source_unit.exact_factor / target_unit.exact_factor


@lru_cache(maxsize=2048)   # pure, and rules combine the same few units again and again
def multiply_units(left: str, right: str) -> str:
    """A readable UCUM unit for left.right: equal symbols combine exponents ('mg/dL' x2 -> 'mg2/dL2')."""
    return _combine(parse_unit(left), parse_unit(right), 1)


@lru_cache(maxsize=2048)   # pure, and rules combine the same few units again and again
def divide_units(left: str, right: str) -> str:
    """A readable UCUM unit for left/right; equal units cancel to '1'."""
    return _combine(parse_unit(left), parse_unit(right), -1)


def dimension_symbols() -> tuple[str, ...]:
    """Names of the positions of `Unit.dimension`: base units, then each arbitrary unit."""
    return _table().dimension_symbols


def describe_dimension(unit: str | Unit) -> str:
    """A human name for a unit's kind ('mass concentration'), or its base-unit signature."""
    parsed = unit if isinstance(unit, Unit) else parse_unit(unit)
    table = _table()
    name = table.dimension_names.get(parsed.dimension)
    if name is not None:
        return name
    signature = _dimension_signature(parsed.dimension, table.dimension_symbols)
    if parsed.is_arbitrary:
        arbitrary = [s for s, e in zip(table.dimension_symbols, parsed.dimension)
                     if e and s in table.arbitrary_symbols]
        named = ", ".join(arbitrary)
        return f"arbitrary unit {named}" if signature == named else f"arbitrary unit {named} ({signature})"
    return f"dimension {signature}"


# ---------------------------------------------------------------------------
# Helpers


def _dimension_signature(dimension: Iterable[int], symbols: tuple[str, ...]) -> str:
    parts = [symbol if exponent == 1 else f"{symbol}{exponent}"
             for symbol, exponent in zip(symbols, dimension) if exponent]
    return ".".join(parts) or "1"


def _incompatible(operation: str, left: Unit, right: Unit) -> IncompatibleUnitsError:
    symbols = dimension_symbols()
    difference = {symbol: a - b for symbol, a, b in zip(symbols, left.dimension, right.dimension) if a != b}
    advice = ""
    if set(difference) == {"mol", "g"} and difference["mol"] == -difference["g"]:
        advice = "; declare a molar mass to convert between them"
    elif set(difference) == {"eq", "mol"} and difference["eq"] == -difference["mol"]:
        advice = "; declare a valence to convert between them"
    elif left.is_arbitrary or right.is_arbitrary:
        advice = "; arbitrary units only convert to themselves"
    preposition = _OPERATION_PREPOSITIONS.get(operation, "and")
    return IncompatibleUnitsError(
        f"cannot {operation} '{left.text}' {preposition} '{right.text}': "
        f"{describe_dimension(left)} vs {describe_dimension(right)}{advice}",
        left.text, right.text)


def _combine(left: Unit, right: Unit, sign: int) -> str:
    for unit in (left, right):
        if unit.is_special:
            raise UnitError(f"cannot multiply or divide special unit '{unit.text}': it needs an offset")
    exponents: dict[tuple[str, str], int] = {}
    for symbol, annotation, exponent in left.terms:
        exponents[(symbol, annotation)] = exponents.get((symbol, annotation), 0) + exponent
    for symbol, annotation, exponent in right.terms:
        exponents[(symbol, annotation)] = exponents.get((symbol, annotation), 0) + sign * exponent
    text = _format_terms(exponents)
    parse_unit(text)  # the printer's output must itself be valid UCUM
    return text


def _format_terms(exponents: Mapping[tuple[str, str], int]) -> str:
    numerator: list[str] = []
    denominator: list[str] = []
    number = Fraction(1)
    for (symbol, annotation), exponent in exponents.items():
        if exponent == 0:
            continue
        if symbol.isdigit():
            number *= Fraction(int(symbol)) ** exponent
            continue
        parts = numerator if exponent > 0 else denominator
        power = abs(exponent)
        if symbol == "":
            parts.extend([annotation] * power)
        else:
            parts.append(f"{symbol}{power if power != 1 else ''}{annotation}")
    if number.numerator != 1:
        numerator.insert(0, str(number.numerator))
    if number.denominator != 1:
        denominator.insert(0, str(number.denominator))
    top = ".".join(numerator)
    if not denominator:
        return top or "1"
    bottom = denominator[0] if len(denominator) == 1 else "(" + ".".join(denominator) + ")"
    return f"{top}/{bottom}" if top else f"/{bottom}"


def _fraction_to_decimal(value: Fraction) -> Decimal:
    with localcontext() as context:
        context.prec = 40
        return Decimal(value.numerator) / Decimal(value.denominator)


def _spelling_hint(text: str, table: _UnitTable) -> str | None:
    """A corrected spelling for common non-UCUM habits (µ, mcg, mEq, IU, hr ...), if it parses."""
    candidate = text
    for pattern, replacement in table.hints:
        candidate = pattern.sub(replacement, candidate)
    if candidate == text:
        return None
    try:
        _Parser(candidate, table).parse()
    except UnknownUnitError:
        return None
    return candidate
