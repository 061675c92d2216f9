"""FHIR date, dateTime and instant strings as inclusive ranges of epoch microseconds.

A value covers the whole span of its precision (https://hl7.org/fhir/R4B/search.html#date):
``2024`` is the year, ``2024-05`` the month, ``2024-05-01T10:00`` the minute,
``10:00:00.5`` the tenth of a second. A time without an offset is taken as UTC (the server
documents this; device-local times are converted to offsets by the mappers). Pure integer
arithmetic: this runs on the ingest hot path.
"""

from __future__ import annotations

import re

__all__ = ["MAX_US", "MIN_US", "date_range", "epoch_us"]

# Open ends of a Period; both fit a signed 64-bit column.
MIN_US = -(2**62)
MAX_US = 2**62

_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_DAY_US = 86_400_000_000
_MDAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days(y: int, m: int, d: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _offset_us(tz: str | None) -> int:
    if not tz or tz == "Z":
        return 0
    minutes = int(tz[1:3]) * 60 + int(tz[4:6])
    return (-minutes if tz[0] == "-" else minutes) * 60_000_000


def date_range(text: str) -> tuple[int, int]:
    """``(lo, hi)`` inclusive epoch µs covered by a FHIR date/dateTime/instant; ValueError if bad."""
    m = _RE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a FHIR date/dateTime: {text!r}")
    ys, ms, ds, hh, mi, ss, frac, tz = m.groups()
    y = int(ys)
    if ms is None:
        return _days(y, 1, 1) * _DAY_US, _days(y + 1, 1, 1) * _DAY_US - 1
    mo = int(ms)
    if not 1 <= mo <= 12:
        raise ValueError(f"bad month in {text!r}")
    if ds is None:
        nxt = _days(y + 1, 1, 1) if mo == 12 else _days(y, mo + 1, 1)
        return _days(y, mo, 1) * _DAY_US, nxt * _DAY_US - 1
    d = int(ds)
    if not 1 <= d <= _MDAYS[mo] or (mo == 2 and d == 29 and not _leap(y)):
        raise ValueError(f"bad day in {text!r}")
    base = _days(y, mo, d) * _DAY_US
    if hh is None:
        return base, base + _DAY_US - 1
    return _time_range(text, base, hh, mi, ss, frac, tz)


def _time_range(
    text: str, base: int, hh: str, mi: str, ss: str | None, frac: str | None, tz: str | None
) -> tuple[int, int]:
    h, mn, s = int(hh), int(mi), int(ss) if ss else 0
    if h > 23 or mn > 59 or s > 59:
        raise ValueError(f"bad time in {text!r}")
    if tz is not None and tz != "Z" and (int(tz[1:3]) > 14 or int(tz[4:6]) > 59):
        raise ValueError(f"bad offset in {text!r}")
    lo = base + ((h * 60 + mn) * 60 + s) * 1_000_000 - _offset_us(tz)
    if ss is None:
        return lo, lo + 60_000_000 - 1
    if frac is None:
        return lo, lo + 999_999
    digits = frac[:6]
    lo += int(digits) * 10 ** (6 - len(digits))
    return lo, lo + 10 ** (6 - len(digits)) - 1


def epoch_us(text: str) -> int:
    """The start of the range of ``text`` (an instant: its exact microsecond)."""
    return date_range(text)[0]
