"""FHIR date, dateTime and instant strings -> Python dates.

FHIR allows partial precision ('2026', '2026-10'); the rules compare points in
time, so a partial dateTime is read as the start of the period it names. A
time without an offset is not valid FHIR but occurs in real exports; it is
read as UTC rather than rejected, and the choice is documented here once.
Anything that does not parse returns None: the caller reports it, nothing is
guessed.

Both readers remember their answers for the last few thousand strings: a Bundle repeats its dates
(a result's effective time is read by validation, by ingest and by the normalizer; a panel's
results share one), and the answers are immutable, so a remembered one is the same value. A string
longer than any FHIR date, dateTime or instant is refused before it is looked at, and never kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, timedelta, timezone

_DATE = re.compile(r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2}))?)?$")
_DATETIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})T(?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)(?P<tz>Z|[+-]\d{2}:\d{2})?$"
)
# The longest text `_DATETIME` matches: 'YYYY-MM-DDThh:mm:ss.fffffffff+hh:mm' and the one trailing
# newline its `$` lets through.
MAX_DATETIME_LENGTH = 36
# Distinct date strings remembered by each reader.
_REMEMBERED = 8192


@dataclass(frozen=True, slots=True)
class PartialDate:
    """A FHIR date of year, month or day precision, as the span of days it allows."""

    earliest: date
    latest: date
    precision: str  # "year", "month" or "day"

    @property
    def is_exact(self) -> bool:
        """True only at day precision, when the date names one day rather than a span."""
        return self.precision == "day"


def parse_partial_date(text: object) -> PartialDate | None:
    """'1980' -> 1980-01-01..1980-12-31; '1980-05' -> May; '1980-05-17' -> that day; else None."""
    if not isinstance(text, str) or len(text) > MAX_DATETIME_LENGTH:
        return None
    return _partial_date(text)


@lru_cache(maxsize=_REMEMBERED)
def _partial_date(text: str) -> PartialDate | None:
    match = _DATE.match(text)
    if match is None:
        return None
    try:
        year = int(match.group("y"))
        if match.group("m") is None:
            return PartialDate(date(year, 1, 1), date(year, 12, 31), "year")
        month = int(match.group("m"))
        if match.group("d") is None:
            first = date(year, month, 1)
            next_month = date(year + (month == 12), month % 12 + 1, 1)
            return PartialDate(first, next_month - timedelta(days=1), "month")
        day = date(year, month, int(match.group("d")))
        return PartialDate(day, day, "day")
    except ValueError:
        return None


def parse_datetime(text: object) -> datetime | None:
    """A timezone-aware datetime for a FHIR date, dateTime or instant; partial values start their period."""
    if not isinstance(text, str) or len(text) > MAX_DATETIME_LENGTH:
        return None
    return _datetime(text)


@lru_cache(maxsize=_REMEMBERED)
def _datetime(text: str) -> datetime | None:
    partial = _partial_date(text)
    if partial is not None:
        start = partial.earliest
        return datetime(start.year, start.month, start.day, tzinfo=timezone.utc)
    match = _DATETIME.match(text)
    if match is None:
        return None
    time_text = match.group("time")
    if len(time_text) == 5:
        time_text += ":00"
    if "." in time_text:
        whole, fraction = time_text.split(".")
        time_text = f"{whole}.{fraction[:6].ljust(6, '0')}"
    tz_text = match.group("tz") or "+00:00"
    if tz_text == "Z":
        tz_text = "+00:00"
    try:
        return datetime.fromisoformat(f"{match.group('date')}T{time_text}{tz_text}")
    except ValueError:
        return None
