"""Each accepted unit's factor to its analyte's canonical unit, derived with the engine's UCUM.

One unit system serves the rule engine and the lab tables: UCUM converts within a dimension
(mg/L -> mg/dL, mU/mL -> U/L, [in_i] -> cm), and a unit of another dimension reaches the canonical
unit only through a quantity the analyte declares in analytes.json: its molar mass (mmol/L -> mg/dL)
or its charge (meq/L -> mmol/L). No factor is written by hand, so a factor cannot drift from the
molar mass it stands for; where clinicians use a rounded factor on purpose (ionized calcium x 4.0),
the row says so as a convention, and the derived factor must stay close to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal
from fractions import Fraction

from ..cql_like.ucum import UnitError, conversion_factor, divide_units, is_valid_unit, multiply_units

# Digits kept of a derived factor that no finite decimal writes exactly (a charge of 3).
INEXACT_FACTOR_DIGITS = 28


class UnitDerivationError(ValueError):
    """A molar mass or charge is unusable, or no UCUM conversion, alone or through one, leads from a unit
    to the canonical unit."""


@dataclass(frozen=True, slots=True)
class Bridge:
    """A quantity of the analyte that links two dimensions: its molar mass (g/mol) or its charge (eq/mol)."""

    name: str  # "molar mass", "charge"
    value: Decimal
    unit: str  # UCUM, e.g. 'g/mol'
    mark: str
    source: str

    def __post_init__(self) -> None:
        if not (self.value.is_finite() and self.value > 0):
            raise UnitDerivationError(f"{self.name} {self.value} must be a positive number")
        if not is_valid_unit(self.unit):
            raise UnitDerivationError(f"{self.name} unit '{self.unit}' is not a UCUM unit")

    @property
    def text(self) -> str:
        """'molar mass 40.08 g/mol'."""
        return f"{self.name} {self.value} {self.unit}"


@dataclass(frozen=True, slots=True)
class Derivation:
    """A unit's factor as UCUM and the analyte's bridges give it, and how it was reached."""

    factor: Decimal
    how: str  # "UCUM mmol/L -> mg/dL x molar mass 40.08 g/mol"


def derive_factor(unit: str, canonical: str, bridges: tuple[Bridge, ...]) -> Derivation:
    """The factor that multiplies a value in `unit` into `canonical`: UCUM within a dimension, else
    through the first bridge that makes the dimensions meet (unit x bridge, or unit / bridge)."""
    try:
        direct = conversion_factor(unit, canonical)
    except UnitError as error:
        reason = str(error)
    else:
        return Derivation(_exact_decimal(direct), f"UCUM {unit} -> {canonical}")
    for bridge in bridges:
        for combine, sign, word in ((multiply_units, 1, "x"), (divide_units, -1, "/")):
            try:
                ratio = conversion_factor(combine(unit, bridge.unit), canonical)
            except UnitError:
                continue
            factor = ratio * Fraction(bridge.value) ** sign
            return Derivation(_exact_decimal(factor), f"UCUM {unit} -> {canonical} {word} {bridge.text}")
    tried = (f"neither alone nor through the analyte's {', '.join(bridge.text for bridge in bridges)}" if bridges
             else "and the analyte declares no molar mass or charge to convert through")
    raise UnitDerivationError(f"UCUM cannot convert '{unit}' to '{canonical}' ({reason}), {tried}")


def _exact_decimal(value: Fraction) -> Decimal:
    """`value` as the shortest decimal that is exactly it (4.008, 0.1, 100); rounded to
    INEXACT_FACTOR_DIGITS significant digits only when no finite decimal is."""
    denominator, twos, fives = value.denominator, 0, 0
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    if denominator != 1:
        return Context(prec=INEXACT_FACTOR_DIGITS).divide(Decimal(value.numerator), Decimal(value.denominator))
    places = max(twos, fives)
    digits = value.numerator * 10 ** places // value.denominator
    return Decimal(digits) if places == 0 else Decimal(f"{digits}E-{places}")


__all__ = ["Bridge", "Derivation", "UnitDerivationError", "derive_factor"]
