"""Per-patient recent window of vital values, bounded in memory.

A ``PatientWindow`` keeps, per parameter, the samples of the last ``horizon`` (and at most
``max_per_param`` of them), ordered by observation time even when samples arrive late.
``WindowStore`` maps patient ids to windows.  Queries take an explicit time ``at`` so that replays
and tests are deterministic: nothing here reads the clock.

Source priority: when several sources give one parameter, ``latest`` returns the newest sample of
the best source that still has a sample younger than ``max_age``.  The order is
``SOURCE_PRIORITY``: for the pulse, ECG heart rate (MDC 147842) before pleth pulse (149530) before
the generic pulse (149514) before the NBP cuff pulse (149546), then LOINC-only codes.  The ECG
counts every beat; the pleth is motion-sensitive; the NBP pulse is one reading every few minutes.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from inference.vitals import Param, VitalSample

__all__ = ["SOURCE_PRIORITY", "PatientWindow", "WindowStore", "slope_per_minute"]

BASELINE_REFRESH = timedelta(seconds=10)

SOURCE_PRIORITY: dict[Param, tuple[str, ...]] = {
    Param.HEART_RATE: ("mdc:147842", "mdc:149530", "mdc:149514", "mdc:149546"),
    # Invasive arterial before the cuff: continuous and not minutes old.
    Param.SYSTOLIC_BP: ("mdc:150033", "mdc:150037", "mdc:150017", "mdc:150021"),
}


def _rank(param: Param, source_code: str) -> int:
    order = SOURCE_PRIORITY.get(param, ())
    return order.index(source_code) if source_code in order else len(order)


class PatientWindow:
    """The recent samples of one patient, per parameter, sorted by time."""

    def __init__(self, horizon: timedelta = timedelta(minutes=30), max_per_param: int = 1024):
        self.horizon = horizon
        self.max_per_param = max_per_param
        self._samples: dict[Param, list[VitalSample]] = {}
        self._sources: dict[Param, set[str]] = {}  # every source seen per parameter, for ``latest``
        # baseline medians, per (param, span, min_samples): (end it was computed for, value)
        self._baselines: dict[tuple[Param, timedelta, int], tuple[datetime, float | None]] = {}
        # per-patient evaluation memo of the rules (``inference.rules``), dropped with the window
        self.memo: dict[object, Any] = {}

    def add(self, sample: VitalSample) -> None:
        """Insert in time order; drop what is older than the horizon or over the size bound."""
        series = self._samples.setdefault(sample.param, [])
        self._sources.setdefault(sample.param, set()).add(sample.source_code)
        lo = bisect.bisect_left(series, sample.time, key=lambda s: s.time)
        hi = bisect.bisect_right(series, sample.time, key=lambda s: s.time)
        for index in range(lo, hi):
            kept = series[index]
            if (kept.observation_id, kept.source_code) == (sample.observation_id, sample.source_code):
                series[index] = sample  # a re-sent reading replaces, never duplicates
                return
        series.insert(hi, sample)
        cutoff = series[-1].time - self.horizon
        drop = bisect.bisect_left(series, cutoff, key=lambda s: s.time)
        drop = max(drop, len(series) - self.max_per_param)
        if drop > 0:
            del series[:drop]

    def samples(self, param: Param) -> tuple[VitalSample, ...]:
        return tuple(self._samples.get(param, ()))

    def at_time(self, param: Param, at: datetime) -> VitalSample | None:
        """The newest sample of ``param`` taken at or before ``at``, whatever its source."""
        series = self._samples.get(param, [])
        index = bisect.bisect_right(series, at, key=lambda s: s.time)
        return series[index - 1] if index else None

    def latest(self, param: Param, at: datetime, max_age: timedelta | None = None) -> VitalSample | None:
        """The newest sample at or before ``at`` from the best source that is fresh enough.

        Scans backwards from ``at`` and stops at the first sample of the best source present (or
        past ``max_age``): the hot path must not walk a whole 30-minute series per evaluation.
        """
        series = self._samples.get(param)
        if not series:
            return None
        index = bisect.bisect_right(series, at, key=_time)
        floor = None if max_age is None else at - max_age
        best_possible = min(_rank(param, code) for code in self._sources[param])
        best: VitalSample | None = None
        best_rank = 1 << 30
        for i in range(index - 1, -1, -1):
            sample = series[i]
            if floor is not None and sample.time < floor:
                break
            rank = _rank(param, sample.source_code)
            if rank < best_rank:  # newest first: a tie never replaces the newer one
                best, best_rank = sample, rank
                if rank == best_possible:
                    break
        return best

    def trend(self, param: Param, span: timedelta, at: datetime, min_span: timedelta | None = None) -> float | None:
        """Least-squares slope (units per minute) over ``[at - span, at]``; None below 2 samples, or
        when the samples cover less than ``min_span`` (a slope over a few noisy minutes is noise)."""
        series = self._samples.get(param, [])
        lo = bisect.bisect_left(series, at - span, key=_time)
        hi = bisect.bisect_right(series, at, key=_time)
        if min_span is not None and (hi <= lo or series[hi - 1].time - series[lo].time < min_span):
            return None
        return slope_per_minute((s.time, s.value) for s in series[lo:hi])


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
        series = self._samples.get(param, [])
        lo = bisect.bisect_left(series, end - span, key=_time)
        hi = bisect.bisect_right(series, end, key=_time)
        value: float | None = None
        if hi - lo >= min_samples and series[hi - 1].time - series[lo].time >= span / 2:
            value = statistics.median(s.value for s in series[lo:hi])
        self._baselines[key] = (end, value)
        return value


def _time(sample: VitalSample) -> datetime:
    return sample.time


def slope_per_minute(points: Iterable[tuple[datetime, float]]) -> float | None:
    """Ordinary least-squares slope of value against time in minutes."""
    pts = list(points)
    if len(pts) < 2:
        return None
    t0 = pts[0][0]
    xs = [(t - t0).total_seconds() / 60.0 for t, _ in pts]
    ys = [v for _, v in pts]
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
