"""The CQL Quantity value: a Decimal with a UCUM unit, and its arithmetic.

Units are validated lazily (when an operation needs them) so facts can be
built cheaply; `Quantity.checked` validates eagerly. Comparison and equality
are exact: the second operand is converted with the exact rational factor
from the unit table, so rounding can never flip an order. Values produced by
a conversion, a division or a multiplication are rounded to CQL's 8 decimal
places with ROUND_HALF_UP (ties away from zero, the convention of laboratory
reporting) and stripped of representation noise, so 1 g/dL converts to
exactly 10 g/L. A molar mass is never a unit conversion: mg/dL to mmol/L
needs an explicit multiplication by a quantity in 'mol/g' (or division by
'g/mol').

`==` and `hash` are structural (value compared numerically, unit text as
written), so 1 'g/dL' == 10 'g/L' is False; CQL '=' is `equals`, CQL '~' is
`equivalent`. Errors: IncompatibleUnitsError for different dimensions,
UnknownUnitError for invalid units, ZeroDivisionError for division by zero
(the evaluator maps it to null).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import (ROUND_HALF_UP, Context, Decimal, DecimalException, DivisionByZero, Inexact, InvalidOperation,
                     Overflow, localcontext)
from fractions import Fraction
from typing import Union

from .ucum import (
    IncompatibleUnitsError,
    Unit,
    UnitError,
    UnknownUnitError,
    conversion_factor,
    divide_units,
    is_valid_unit,
    multiply_units,
    parse_unit,
)

__all__ = [
    "Quantity",
    "UnitError",
    "UnknownUnitError",
    "IncompatibleUnitsError",
    "Unit",
    "parse_unit",
    "is_valid_unit",
    "DECIMAL_PLACES",
    "round_to_cql_decimal",
]

DECIMAL_PLACES = 8
DIMENSIONLESS = "1"
_QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)
_QUANTITY_TEXT = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(?:'(.*)'|([A-Za-z]+))?\s*$")

Number = Union[Decimal, int]


# Wide enough to hold exactly any product of two CQL Decimals (|x| < 10^28, 8 places: 36 digits each);
# an operation that would round anyway raises (Inexact), and the exact Fraction path takes over.
_EXACT = Context(prec=80, traps=[Inexact, InvalidOperation, Overflow, DivisionByZero])
_WIDE = Context(prec=80)


def round_to_cql_decimal(value: Fraction | Decimal) -> Decimal:
    """Round to 8 decimal places (ROUND_HALF_UP) and drop trailing zeros: Fraction(10) -> Decimal('10')."""
    if type(value) is Decimal and value.is_finite() and value.adjusted() < 60:
        # the same rounding (half away from zero) of the same exact value, without Fractions
        return _strip_noise(value.quantize(_QUANTUM, rounding=ROUND_HALF_UP, context=_WIDE))
    exact = Fraction(value)
    scaled = abs(exact) * 10 ** DECIMAL_PLACES
    units = int(scaled + Fraction(1, 2))  # floor(x + 1/2): half away from zero for |x|
    if exact < 0:
        units = -units
    with localcontext() as context:
        context.prec = 80
        return _strip_noise(Decimal(units).scaleb(-DECIMAL_PLACES))


def _strip_noise(value: Decimal) -> Decimal:
    if value == 0:
        return Decimal(0)
    normalized = value.normalize(_WIDE)
    if normalized.as_tuple().exponent > 0:
        normalized = normalized.quantize(Decimal(1), context=_WIDE)
    return normalized


def _product(a: Number, b: Number) -> Decimal:
    """a x b rounded to a CQL Decimal: exactly in Decimal when it fits, else through Fractions."""
    if (type(a) is Decimal or type(a) is int) and (type(b) is Decimal or type(b) is int):
        try:
            return round_to_cql_decimal(_EXACT.multiply(a, b))
        except DecimalException:
            pass
    return round_to_cql_decimal(Fraction(a) * Fraction(b))


def _limit_places(value: Decimal) -> Decimal:
    """Keep a Decimal's own precision unless it has more than 8 decimal places."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -DECIMAL_PLACES:
        with localcontext() as context:
            context.prec = 80
            return value.quantize(_QUANTUM, rounding=ROUND_HALF_UP)
    return value


def _to_decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise TypeError("a Quantity value cannot be a boolean")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
    else:
        raise TypeError(f"a Quantity value must be Decimal, int or str, not {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"a Quantity value must be finite, not {value!r}")
    if result == 0 and result.is_signed():
        result = result.copy_abs()  # -0 prints as "-0"; keep zero unsigned
    return result


def _decimal_places(value: Decimal) -> int:
    """Decimal places that carry precision (trailing zeros ignored, as CQL '~' says)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _plain_number(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    return None


@dataclass(frozen=True, slots=True)
class Quantity:
    """A CQL System.Quantity: `value` in UCUM `unit` ('1' when dimensionless)."""

    value: Decimal
    unit: str = DIMENSIONLESS

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _to_decimal(self.value))
        if not isinstance(self.unit, str):
            raise TypeError(f"a Quantity unit must be a string, not {type(self.unit).__name__}")
        if self.unit == "":
            object.__setattr__(self, "unit", DIMENSIONLESS)

    # -- construction -------------------------------------------------------

    @classmethod
    def checked(cls, value: Number | str, unit: str = DIMENSIONLESS) -> "Quantity":
        """Build a quantity and validate its unit now (raises UnknownUnitError)."""
        quantity = cls(value, unit)  # type: ignore[arg-type]
        parse_unit(quantity.unit)
        return quantity

    @classmethod
    def parse(cls, text: str) -> "Quantity":
        """Read the form `str()` writes ("10.5 'mg/dL'") or a CQL literal ("3 days", "5")."""
        match = _QUANTITY_TEXT.match(text)
        if match is None:
            raise ValueError(f"not a quantity: {text!r}")
        value, quoted, keyword = match.groups()
        return cls.checked(Decimal(value), quoted if quoted is not None else (keyword or DIMENSIONLESS))

    @property
    def parsed_unit(self) -> Unit:
        """The parsed UCUM unit (cached by text), for conversion and dimension checks."""
        return parse_unit(self.unit)

    # -- conversion and comparison -------------------------------------------

    def convert(self, unit: str) -> "Quantity":
        """This quantity in `unit`, rounded to 8 decimal places; raises IncompatibleUnitsError."""
        if unit == "":
            unit = DIMENSIONLESS
        if unit == self.unit:
            parse_unit(unit)
            return self
        ratio = conversion_factor(self.unit, unit, operation="convert")
        return Quantity(round_to_cql_decimal(Fraction(self.value) * ratio), unit)

    def compare(self, other: "Quantity") -> int:
        """-1, 0 or 1: exact comparison after converting `other` into this unit."""
        if isinstance(other, Quantity) and other.unit == self.unit:   # ratio 1: the values compare as they are
            parse_unit(self.unit)   # an unknown unit is refused all the same
            mine, theirs = self.value, other.value
            return (mine > theirs) - (mine < theirs)
        mine, theirs = self._exact_pair(other, "compare")
        return (mine > theirs) - (mine < theirs)

    def equals(self, other: "Quantity") -> bool:
        """CQL '=': equal after unit conversion (exact); incompatible units raise."""
        return self.compare(other) == 0

    def equivalent(self, other: "Quantity") -> bool:
        """CQL '~': equal at the precision of the less precise operand; False for incompatible units."""
        if not isinstance(other, Quantity):
            raise TypeError(f"cannot compare a Quantity with {type(other).__name__}")
        try:
            converted = other.convert(self.unit)
        except IncompatibleUnitsError:
            return False
        places = min(_decimal_places(self.value), _decimal_places(converted.value))
        quantum = Decimal(1).scaleb(-places)
        with localcontext() as context:
            context.prec = 80
            return (self.value.quantize(quantum, rounding=ROUND_HALF_UP)
                    == converted.value.quantize(quantum, rounding=ROUND_HALF_UP))

    def _exact_pair(self, other: "Quantity", operation: str) -> tuple[Fraction, Fraction]:
        if not isinstance(other, Quantity):
            raise TypeError(f"cannot {operation} a Quantity with {type(other).__name__}")
        # Ask for self -> other so that error messages name the left operand first.
        ratio = conversion_factor(self.unit, other.unit, operation=operation)
        return Fraction(self.value), Fraction(other.value) / ratio

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.compare(other) < 0

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.compare(other) <= 0

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.compare(other) > 0

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.compare(other) >= 0

    # -- arithmetic ----------------------------------------------------------

    def _is_plain_number_unit(self) -> bool:
        unit = parse_unit(self.unit)
        return unit.is_dimensionless and unit.exact_factor == 1 and not unit.is_arbitrary

    def _addend(self, other: object, operation: str) -> Decimal | None:
        """`other` as a value in this unit, or None when `other` is not a number or quantity."""
        if isinstance(other, Quantity):
            if other.unit == self.unit:
                parse_unit(self.unit)
                return other.value
            ratio = conversion_factor(self.unit, other.unit, operation=operation)
            return round_to_cql_decimal(Fraction(other.value) / ratio)
        number = _plain_number(other)
        if number is None:
            return None
        if not self._is_plain_number_unit():
            raise IncompatibleUnitsError(
                f"cannot {operation} a plain number and '{self.unit}': give the number a unit",
                self.unit, DIMENSIONLESS)
        return number

    def __add__(self, other: object) -> "Quantity":
        addend = self._addend(other, "add")
        if addend is None:
            return NotImplemented
        return Quantity(_limit_places(self.value + addend), self.unit)

    def __radd__(self, other: object) -> "Quantity":
        return self.__add__(other)

    def __sub__(self, other: object) -> "Quantity":
        subtrahend = self._addend(other, "subtract")
        if subtrahend is None:
            return NotImplemented
        return Quantity(_limit_places(self.value - subtrahend), self.unit)

    def __rsub__(self, other: object) -> "Quantity":
        minuend = self._addend(other, "subtract")
        if minuend is None:
            return NotImplemented
        return Quantity(_limit_places(minuend - self.value), self.unit)

    def __mul__(self, other: object) -> "Quantity":
        if isinstance(other, Quantity):
            if other.unit == DIMENSIONLESS:
                unit = self.unit
            elif self.unit == DIMENSIONLESS:
                unit = other.unit
            else:
                unit = multiply_units(self.unit, other.unit)
            factor = other.value
        else:
            number = _plain_number(other)
            if number is None:
                return NotImplemented
            unit, factor = self.unit, number
        return Quantity(_product(self.value, factor), unit)

    def __rmul__(self, other: object) -> "Quantity":
        return self.__mul__(other)

    def __truediv__(self, other: object) -> "Quantity":
        if isinstance(other, Quantity):
            if other.unit == DIMENSIONLESS:
                unit = self.unit
            else:
                unit = divide_units(self.unit, other.unit)
            divisor = other.value
        else:
            number = _plain_number(other)
            if number is None:
                return NotImplemented
            unit, divisor = self.unit, number
        if divisor == 0:
            raise ZeroDivisionError(f"division of {self} by zero")
        return Quantity(round_to_cql_decimal(Fraction(self.value) / Fraction(divisor)), unit)

    def __rtruediv__(self, other: object) -> "Quantity":
        number = _plain_number(other)
        if number is None:
            return NotImplemented
        if self.value == 0:
            raise ZeroDivisionError(f"division of {number} by {self}")
        unit = DIMENSIONLESS if self.unit == DIMENSIONLESS else divide_units(DIMENSIONLESS, self.unit)
        return Quantity(round_to_cql_decimal(Fraction(number) / Fraction(self.value)), unit)

    def __neg__(self) -> "Quantity":
        return Quantity(-self.value, self.unit)

    def __pos__(self) -> "Quantity":
        return self

    def __abs__(self) -> "Quantity":
        return Quantity(abs(self.value), self.unit)

    def __str__(self) -> str:
        return f"{self.value:f} '{self.unit}'"
