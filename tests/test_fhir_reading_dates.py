"""FHIR date readers: partial precision, time zones, leap days, and answers that stay the same when remembered."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from service.fhir_reading import dates
from service.fhir_reading.dates import MAX_DATETIME_LENGTH, PartialDate, parse_datetime, parse_partial_date

UTC = timezone.utc

PARTIAL_DATES = [
    ("1980", PartialDate(date(1980, 1, 1), date(1980, 12, 31), "year")),
    ("1980-05", PartialDate(date(1980, 5, 1), date(1980, 5, 31), "month")),
    ("2024-02", PartialDate(date(2024, 2, 1), date(2024, 2, 29), "month")),  # a leap February
    ("2023-02", PartialDate(date(2023, 2, 1), date(2023, 2, 28), "month")),
    ("1999-12", PartialDate(date(1999, 12, 1), date(1999, 12, 31), "month")),
    ("2024-02-29", PartialDate(date(2024, 2, 29), date(2024, 2, 29), "day")),
    ("1980-05-17", PartialDate(date(1980, 5, 17), date(1980, 5, 17), "day")),
    ("2026-01-05\n", PartialDate(date(2026, 1, 5), date(2026, 1, 5), "day")),  # `$` lets one newline through
    ("2023-02-29", None),  # no leap day in 2023
    ("1900-02-29", None),  # nor in 1900
    ("1980-13", None), ("1980-00-10", None), ("1980-04-31", None), ("80", None), ("1980-5", None),
    ("1980-05-17T10:00:00Z", None), ("", None), (" 1980", None), ("1980-05-17 ", None),
    (None, None), (1980, None), (["1980"], None), ("1" * 5000, None),
]

DATETIMES = [
    ("2026", datetime(2026, 1, 1, tzinfo=UTC)),
    ("2026-10", datetime(2026, 10, 1, tzinfo=UTC)),
    ("2024-02-29", datetime(2024, 2, 29, tzinfo=UTC)),
    ("2026-01-05T08:00:00Z", datetime(2026, 1, 5, 8, 0, tzinfo=UTC)),
    ("2026-01-05T08:00Z", datetime(2026, 1, 5, 8, 0, tzinfo=UTC)),
    ("2026-01-05T08:00:00", datetime(2026, 1, 5, 8, 0, tzinfo=UTC)),  # no offset: read as UTC
    ("2019-03-04T10:20:30+01:00", datetime(2019, 3, 4, 10, 20, 30, tzinfo=timezone(timedelta(hours=1)))),
    ("2019-03-04T10:20:30-05:30", datetime(2019, 3, 4, 10, 20, 30, tzinfo=timezone(-timedelta(hours=5, minutes=30)))),
    ("2019-03-04T23:59:59+14:00", datetime(2019, 3, 4, 23, 59, 59, tzinfo=timezone(timedelta(hours=14)))),
    ("2026-01-05T08:00:00.1Z", datetime(2026, 1, 5, 8, 0, 0, 100000, tzinfo=UTC)),
    ("2026-01-05T08:00:00.123456789+00:00", datetime(2026, 1, 5, 8, 0, 0, 123456, tzinfo=UTC)),
    ("2024-02-29T12:00:00Z", datetime(2024, 2, 29, 12, 0, tzinfo=UTC)),
    ("2026-01-05T08:00:00.123456789+00:00\n", datetime(2026, 1, 5, 8, 0, 0, 123456, tzinfo=UTC)),
    ("2023-02-29T12:00:00Z", None), ("2026-01-05T24:00:00Z", None), ("2026-01-05T08:60:00Z", None),
    ("2026-01-05T08:00:00+24:00", None), ("2026-01-05 08:00:00Z", None), ("2026-01-05T08Z", None),
    ("2026-01-05T08:00:00.1234567890Z", None), ("20260105", None), ("2026-W01", None), ("", None),
    (None, None), (20260105, None), ("2026-01-05T08:00:00Z" + " " * 100, None),
]


@pytest.mark.parametrize("text, expected", PARTIAL_DATES)
def test_partial_dates(text, expected):
    assert parse_partial_date(text) == expected
    assert parse_partial_date(text) == expected  # the second reading is answered from memory


@pytest.mark.parametrize("text, expected", DATETIMES)
def test_datetimes(text, expected):
    for _ in range(2):  # read, then answered from memory
        found = parse_datetime(text)
        assert found == expected
        if expected is not None:
            assert found.utcoffset() == expected.utcoffset()  # the same instant in the same zone


def _uncached_partial_date(text: object) -> PartialDate | None:
    return dates._partial_date.__wrapped__(text) if isinstance(text, str) else None


def _uncached_datetime(text: object) -> datetime | None:
    return dates._datetime.__wrapped__(text) if isinstance(text, str) else None


def _every_shape() -> list[str]:
    """Dates of every precision, every month's last days, offsets on both sides, and near misses."""
    texts = []
    for year in (1900, 1999, 2000, 2023, 2024):
        texts.append(str(year))
        for month in range(0, 14):
            texts.append(f"{year}-{month:02d}")
            for day in (0, 1, 28, 29, 30, 31, 32):
                day_text = f"{year}-{month:02d}-{day:02d}"
                texts += [day_text, f"{day_text}T00:00:00Z", f"{day_text}T23:59:59.999+05:45",
                          f"{day_text}T12:30-08:00", f"{day_text}T12:30:00"]
    return texts


def test_remembered_answers_match_a_fresh_reading():
    dates._partial_date.cache_clear()
    dates._datetime.cache_clear()
    for text in _every_shape() * 2:
        assert parse_partial_date(text) == _uncached_partial_date(text), text
        assert parse_datetime(text) == _uncached_datetime(text), text


def test_a_long_text_is_refused_without_being_remembered():
    dates._datetime.cache_clear()
    long_text = "2026-01-05T08:00:00Z".ljust(MAX_DATETIME_LENGTH + 1, "0")
    assert parse_datetime(long_text) is None and parse_partial_date(long_text) is None
    assert dates._datetime.cache_info().currsize == 0


def test_the_longest_valid_datetime_is_read():
    longest = "2026-01-05T08:00:00.123456789+14:00\n"
    assert len(longest) == MAX_DATETIME_LENGTH
    assert parse_datetime(longest) == datetime(2026, 1, 5, 8, 0, 0, 123456, tzinfo=timezone(timedelta(hours=14)))
