"""Per-patient recent window of vital values, bounded in memory, held as columns.

A ``PatientWindow`` keeps, per parameter, the samples of the last ``horizon`` (and at most
``max_per_param`` of them), ordered by observation time even when samples arrive late.
``WindowStore`` maps patient ids to windows.  Queries take an explicit time ``at`` so that replays
and tests are deterministic: nothing here reads the clock.

Storage: one ``_Series`` per parameter of parallel ``array`` columns (time in integer
microseconds since the epoch, value, source and device as indices into small tables) and the
observation ids packed in one ``bytearray``.  A window of 30 minutes holds up to a million
values at 100 beds; as objects (``VitalSample`` with its datetime and strings, ~450 bytes each)
every full collection of the cyclic GC scanned them and the heap grew ~700 MiB in 5 minutes.
Arrays and bytes are not tracked by the collector, so a series is one tracked object whatever
its length, and ~40 bytes a value.  Queries return ``Reading`` values built on demand.
Times are kept to the microsecond, as ``datetime`` does, so every comparison and slope is the
same as with datetimes; a naive time is taken as UTC.

Source priority: when several sources give one parameter, ``latest`` returns the newest sample of
the best source that still has a sample younger than ``max_age``.  The order is
``SOURCE_PRIORITY``: for the pulse, ECG heart rate (MDC 147842) before pleth pulse (149530) before
the generic pulse (149514) before the NBP cuff pulse (149546), then LOINC-only codes.  The ECG
counts every beat; the pleth is motion-sensitive; the NBP pulse is one reading every few minutes.
"""

from __future__ import annotations

import statistics
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from inference.vitals import Param, VitalSample

__all__ = ["SOURCE_PRIORITY", "PatientWindow", "Reading", "WindowStore", "slope_per_minute"]

BASELINE_REFRESH = timedelta(seconds=10)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_COMPACT_ROWS = 64  # expired rows are cut off the columns' front in steps of this many
_UNKNOWN = object()

SOURCE_PRIORITY: dict[Param, tuple[str, ...]] = {
    Param.HEART_RATE: ("mdc:147842", "mdc:149530", "mdc:149514", "mdc:149546"),
    # Invasive arterial before the cuff: continuous and not minutes old.
    Param.SYSTOLIC_BP: ("mdc:150033", "mdc:150037", "mdc:150017", "mdc:150021"),
}


def _rank(param: Param, source_code: str) -> int:
    order = SOURCE_PRIORITY.get(param, ())
    return order.index(source_code) if source_code in order else len(order)


def _us(t: datetime) -> int:
    return ((t if t.tzinfo is not None else t.replace(tzinfo=UTC)) - _EPOCH) // _US


class Reading:
    """One sample read back from a window; ``time`` is rebuilt (UTC) from its microseconds."""

    __slots__ = ("device_id", "observation_id", "source_code", "time_us", "value")

    def __init__(self, time_us: int, value: float, source_code: str, observation_id: str,
                 device_id: str | None):
        self.time_us, self.value, self.source_code = time_us, value, source_code
        self.observation_id, self.device_id = observation_id, device_id

    @property
    def time(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.time_us)

    def __repr__(self) -> str:
        return f"Reading({self.time.isoformat()}, {self.value}, {self.source_code}, {self.observation_id})"


class _Series:
    """One parameter's samples, oldest first, as parallel columns; rows before ``head`` have expired.

    Observation ids are appended to ``ids`` and found by (``id_at``, ``id_len``); a late sample
    inserts only into the columns, so the bytes are in arrival order, not time order, and are
    rewritten once the dead ones outweigh the live ones (``_compact``)."""

    __slots__ = ("device", "device_names", "head", "id_at", "id_len", "ids", "live_id_bytes", "param",
                 "rank_of", "source", "source_names", "times", "values")

    def __init__(self, param: Param):
        self.param, self.head, self.live_id_bytes = param, 0, 0
        self.times, self.values = array("q"), array("d")
        self.source, self.device = array("H"), array("I")
        self.id_at, self.id_len, self.ids = array("I"), array("I"), bytearray()
        self.source_names: list[str] = []
        self.rank_of: list[int] = []  # ``_rank`` of each source name
        self.device_names: list[str | None] = []

    def __len__(self) -> int:
        return len(self.times) - self.head

    def add(self, t: int, sample: VitalSample, horizon_us: int, max_rows: int) -> None:
        times = self.times
        source = self._source(sample.source_code)
        device = _intern(self.device_names, sample.device_id)
        oid = sample.observation_id.encode("utf-8", "surrogatepass")
        lo = bisect_left(times, t, self.head)
        hi = bisect_right(times, t, lo)
        for i in range(lo, hi):
            if self.source[i] == source and self._id_bytes(i) == oid:
                self.values[i], self.device[i] = sample.value, device  # a re-sent reading replaces
                return
        if hi == len(times):
            times.append(t)
            self.values.append(sample.value)
            self.source.append(source)
            self.device.append(device)
            self.id_at.append(len(self.ids))
            self.id_len.append(len(oid))
        else:
            times.insert(hi, t)
            self.values.insert(hi, sample.value)
            self.source.insert(hi, source)
            self.device.insert(hi, device)
            self.id_at.insert(hi, len(self.ids))
            self.id_len.insert(hi, len(oid))
        self.ids += oid
        self.live_id_bytes += len(oid)
        drop = max(bisect_left(times, times[-1] - horizon_us, self.head), len(times) - max_rows)
        if drop > self.head:
            self.live_id_bytes -= sum(self.id_len[self.head:drop])
            self.head = drop
            if drop >= _COMPACT_ROWS or len(self.ids) > 2 * self.live_id_bytes + 4096:
                self._compact()

    def range(self, start_us: int, end_us: int) -> tuple[int, int]:
        """Row indices of the samples taken in ``[start_us, end_us]``."""
        return bisect_left(self.times, start_us, self.head), bisect_right(self.times, end_us, self.head)

    def reading(self, i: int) -> Reading:
        return Reading(self.times[i], self.values[i], self.source_names[self.source[i]],
                       self._id_bytes(i).decode("utf-8", "surrogatepass"),
                       self.device_names[self.device[i]])

    def _id_bytes(self, i: int) -> bytearray:
        at = self.id_at[i]
        return self.ids[at:at + self.id_len[i]]

    def _source(self, code: str) -> int:
        index = _intern(self.source_names, code)
        if index == len(self.rank_of):
            self.rank_of.append(_rank(self.param, code))
        return index

    def _compact(self) -> None:
        """Cut the expired rows off; rewrite the id bytes (and the device table) live rows only."""
        head = self.head
        for column in (self.times, self.values, self.source, self.device, self.id_at, self.id_len):
            del column[:head]
        self.head = 0
        if len(self.ids) <= 2 * self.live_id_bytes + 4096:
            return
        ids, at = bytearray(), array("I")
        for start, length in zip(self.id_at, self.id_len, strict=True):
            at.append(len(ids))
            ids += self.ids[start:start + length]
        self.ids, self.id_at = ids, at
        names: list[str | None] = []
        self.device = array("I", (_intern(names, self.device_names[d]) for d in self.device))
        self.device_names = names


def _intern(table: list[Any], name: Any) -> int:
    """Index of ``name`` in a small table, appended when new (a series sees a few sources and devices)."""
    for i, known in enumerate(table):
        if known == name:
            return i
    table.append(name)
    return len(table) - 1


class PatientWindow:
    """The recent samples of one patient, per parameter, sorted by time."""

    def __init__(self, horizon: timedelta = timedelta(minutes=30), max_per_param: int = 1024):
        self.horizon = horizon
        self.max_per_param = max_per_param
        self._horizon_us = horizon // _US
        self._series: dict[Param, _Series] = {}
        self._at: tuple[datetime | None, int] = (None, 0)  # one evaluation asks about one instant
        # baseline medians, per (param, span, min_samples): (end it was computed for, value)
        self._baselines: dict[tuple[Param, timedelta, int], tuple[datetime, float | None]] = {}
        # per-patient evaluation memo of the rules (``inference.rules``), dropped with the window
        self.memo: dict[object, Any] = {}
        # ``latest`` answers since the last ``add``: one sample's evaluation asks the same question
        # several times (each level of a limit, the deviation and concordant rules of its parameter)
        self._latest: dict[tuple[Param, datetime, timedelta | None], Reading | None] = {}

    def add(self, sample: VitalSample) -> None:
        """Insert in time order; drop what is older than the horizon or over the size bound."""
        if self._latest:
            self._latest.clear()
        series = self._series.get(sample.param)
        if series is None:
            series = self._series[sample.param] = _Series(sample.param)
        series.add(_us(sample.time), sample, self._horizon_us, self.max_per_param)

    def samples(self, param: Param) -> tuple[Reading, ...]:
        series = self._series.get(param)
        return () if series is None else tuple(series.reading(i) for i in range(series.head, len(series.times)))

    def at_time(self, param: Param, at: datetime) -> Reading | None:
        """The newest sample of ``param`` taken at or before ``at``, whatever its source."""
        series = self._series.get(param)
        if series is None:
            return None
        index = bisect_right(series.times, _us(at), series.head)
        return series.reading(index - 1) if index > series.head else None

    def latest(self, param: Param, at: datetime, max_age: timedelta | None = None) -> Reading | None:
        """The newest sample at or before ``at`` from the best source that is fresh enough.

        Scans backwards from ``at`` and stops at the first sample of the best source present (or
        past ``max_age``): the hot path must not walk a whole 30-minute series per evaluation.
        """
        key = (param, at, max_age)
        known = self._latest.get(key, _UNKNOWN)
        if known is not _UNKNOWN:
            return known  # type: ignore[return-value]
        found = self._find_latest(param, at, max_age)
        self._latest[key] = found
        return found

    def _find_latest(self, param: Param, at: datetime, max_age: timedelta | None) -> Reading | None:
        series = self._series.get(param)
        if not series:
            return None
        at_us = self._micros(at)
        times, source, rank_of, head = series.times, series.source, series.rank_of, series.head
        floor = None if max_age is None else at_us - max_age // _US
        best_possible = min(rank_of)
        best, best_rank = -1, 1 << 30
        for i in range(bisect_right(times, at_us, head) - 1, head - 1, -1):
            if floor is not None and times[i] < floor:
                break
            rank = rank_of[source[i]]
            if rank < best_rank:  # newest first: a tie never replaces the newer one
                best, best_rank = i, rank
                if rank == best_possible:
                    break
        return None if best < 0 else series.reading(best)

    def _micros(self, at: datetime) -> int:
        if self._at[0] is not at:
            self._at = (at, _us(at))
        return self._at[1]

    def trend(self, param: Param, span: timedelta, at: datetime, min_span: timedelta | None = None) -> float | None:
        """Least-squares slope (units per minute) over ``[at - span, at]``; None below 2 samples, or
        when the samples cover less than ``min_span`` (a slope over a few noisy minutes is noise)."""
        series = self._series.get(param)
        if series is None:
            return None
        at_us = self._micros(at)
        lo, hi = series.range(at_us - span // _US, at_us)
        times = series.times
        if min_span is not None and (hi <= lo or times[hi - 1] - times[lo] < min_span // _US):
            return None
        return _slope(times[lo:hi], series.values[lo:hi])

    def baseline(self, param: Param, end: datetime, span: timedelta, min_samples: int = 5,
                 refresh: timedelta = BASELINE_REFRESH) -> float | None:
        """Median of ``param`` over ``[end - span, end]``: the patient's own baseline.

        None with fewer than ``min_samples`` values or when they cover less than half of ``span``
        (a patient admitted minutes ago has no baseline yet).  A median, not a mean, so a few
        artefacts in the baseline period do not move it.  Recomputed at most every ``refresh`` of
        ``end`` (a 10-minute median moves little in 10 s; the hot path must not sort 600 values
        per sample); an ``end`` before the cached one (a replay) recomputes.
        """
        key = (param, span, min_samples)
        cached = self._baselines.get(key)
        if cached is not None and timedelta(0) <= end - cached[0] < refresh:
            return cached[1]
        series = self._series.get(param)
        value: float | None = None
        if series is not None:
            end_us = _us(end)
            lo, hi = series.range(end_us - span // _US, end_us)
            if hi - lo >= min_samples and series.times[hi - 1] - series.times[lo] >= (span / 2) // _US:
                value = statistics.median(series.values[lo:hi])
        self._baselines[key] = (end, value)
        return value


def slope_per_minute(points: Iterable[tuple[datetime, float]]) -> float | None:
    """Ordinary least-squares slope of value against time in minutes."""
    pts = list(points)
    if not pts:
        return None
    t0 = pts[0][0]
    return _slope([(t - t0) // _US for t, _ in pts], [v for _, v in pts])


def _slope(times_us: Sequence[int], ys: Sequence[float]) -> float | None:
    """The slope per minute of ``ys`` against times in microseconds (as ``timedelta.total_seconds``
    gives them: the exact microseconds divided by 10**6, so the result is the same to the bit)."""
    if len(times_us) < 2:
        return None
    t0 = times_us[0]
    xs = [(t - t0) / 1_000_000 / 60.0 for t in times_us]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0.0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx


class WindowStore:
    """Windows for all patients; ``add`` routes a sample to its patient's window."""

    def __init__(self, horizon: timedelta = timedelta(minutes=30), max_per_param: int = 1024):
        self.horizon = horizon
        self.max_per_param = max_per_param
        self._windows: dict[str, PatientWindow] = {}

    def add(self, sample: VitalSample) -> PatientWindow:
        window = self._windows.get(sample.patient_id)
        if window is None:
            window = PatientWindow(self.horizon, self.max_per_param)
            self._windows[sample.patient_id] = window
        window.add(sample)
        return window

    def get(self, patient_id: str) -> PatientWindow | None:
        return self._windows.get(patient_id)

    def forget(self, patient_id: str) -> None:
        """Drop a discharged patient's window."""
        self._windows.pop(patient_id, None)

    def __len__(self) -> int:
        return len(self._windows)
