"""FHIR date precision ranges (epoch µs), computed by hand from the calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.search import date_range, epoch_us

S = 1_000_000
DAY = 86_400 * S
Y2024 = 1_704_067_200 * S  # 2024-01-01T00:00:00Z


@pytest.mark.parametrize(("text", "lo", "hi"), [
    ("2024", Y2024, Y2024 + 366 * DAY - 1),  # leap year
    ("2024-02", Y2024 + 31 * DAY, Y2024 + 60 * DAY - 1),
    ("2024-12", Y2024 + 335 * DAY, Y2024 + 366 * DAY - 1),
    ("2024-02-29", Y2024 + 59 * DAY, Y2024 + 60 * DAY - 1),
    ("2024-01-01T00:00", Y2024, Y2024 + 60 * S - 1),
    ("2024-01-01T00:00Z", Y2024, Y2024 + 60 * S - 1),
    ("2024-01-01T01:00:00+01:00", Y2024, Y2024 + S - 1),
    ("2023-12-31T19:00:00-05:00", Y2024, Y2024 + S - 1),
    ("2024-01-01T00:00:00.25Z", Y2024 + 250_000, Y2024 + 259_999),
    ("2024-01-01T00:00:00.123456Z", Y2024 + 123_456, Y2024 + 123_456),
    ("2024-01-01T00:00:00.1234567Z", Y2024 + 123_456, Y2024 + 123_456),
    ("1970", 0, 365 * DAY - 1),
    ("1969-12-31", -DAY, -1),
])
def test_ranges(text: str, lo: int, hi: int) -> None:
    assert date_range(text) == (lo, hi)


def test_instant() -> None:
    assert epoch_us("2024-01-01T00:00:01.5Z") == Y2024 + 1_500_000


@pytest.mark.parametrize("text", [
    "2023-02-29", "2024-13", "2024-00-10", "2024-01-32", "2024-01-01T24:00", "2024-01-01T10",
    "24", "2024-1-1", "2024-01-01T10:00+15:00", "2024-01-01 10:00", "",
])
def test_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        date_range(text)


# ---- properties against the standard library's calendar ----------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# hypothesis bounds are naive by design; the offset is drawn separately
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9998, 12, 30)),  # noqa: DTZ001
       st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_matches_datetime_arithmetic(dt: datetime, offset_min: int) -> None:
    tz = timezone(timedelta(minutes=offset_min))
    aware = dt.replace(tzinfo=tz)
    text = aware.isoformat(timespec="microseconds")
    lo, hi = date_range(text)
    assert lo == hi == (aware - _EPOCH) // timedelta(microseconds=1)
    day_lo, day_hi = date_range(text[:10])
    midnight = datetime(dt.year, dt.month, dt.day, tzinfo=UTC)
    assert day_lo == (midnight - _EPOCH) // timedelta(microseconds=1)
    assert day_hi == day_lo + DAY - 1
