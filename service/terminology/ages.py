"""Age in completed days, months and years, for picking age-banded default ranges.

Band edges are written '28d', '1y', '13y'; each is compared in its own unit of
completed time, the way pediatric reference intervals are stated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_BOUND = re.compile(r"^(?P<n>\d{1,3})(?P<unit>[dmy])$")


@dataclass(frozen=True, slots=True)
class Age:
    """A completed age in days, months and years at once: each band edge compares in its own unit."""

    days: int
    months: int
    years: int

    def reached(self, bound: "AgeBound") -> bool:
        """True when this age is at least `bound`."""
        unit = bound.unit
        completed = self.days if unit == "d" else self.months if unit == "m" else self.years
        return completed >= bound.value


@dataclass(frozen=True, slots=True)
class AgeBound:
    """One edge of an age band, such as '28d' or '13y'."""

    value: int
    unit: str  # "d", "m" or "y"

    @classmethod
    def parse(cls, text: str) -> "AgeBound":
        """Read '<n>d', '<n>m' or '<n>y'; ValueError otherwise, so a bad range table fails when loaded."""
        match = _BOUND.match(text)
        if match is None:
            raise ValueError(f"age bound {text!r} is not '<n>d', '<n>m' or '<n>y'")
        return cls(int(match.group("n")), match.group("unit"))

    def __str__(self) -> str:
        return f"{self.value}{self.unit}"


def age_on(birth: date, on: date) -> Age | None:
    """Completed age at `on`; None when `on` is before the birth (an impossible age is not guessed)."""
    if on < birth:
        return None
    months = (on.year - birth.year) * 12 + (on.month - birth.month)
    if on.day < birth.day:
        months -= 1
    return Age(days=(on - birth).days, months=months, years=months // 12)
