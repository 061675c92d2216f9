"""Per-bed physiology model shared by the device simulators.

Each vital follows a mean-reverting random walk (Ornstein-Uhlenbeck) around a target; the
scripted scenario moves the targets after an onset time, ramping in over a few minutes.
Seeded: the same seed and scenario give the same trajectory.  ``expected`` is the same trajectory
without the noise (the mean of the process): what the patient's physiology is doing, as opposed
to what a monitor reads; an evaluation uses it to say when a scripted deterioration has become
clinically visible (``bench/alert_latency.py``: the clinical onset).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

__all__ = ["SCENARIOS", "Physiology", "Vitals"]

SCENARIOS = ("stable", "sepsis", "respiratory-failure", "hypotension", "device-disconnect")


@dataclass(frozen=True, slots=True)
class Vitals:
    hr: float
    rr: float
    spo2: float
    sbp: float
    dbp: float
    temp: float
    fio2: float
    etco2: float

    @property
    def map(self) -> float:
        return (self.sbp + 2 * self.dbp) / 3


_BASELINE = Vitals(hr=78, rr=14, spo2=97, sbp=122, dbp=74, temp=36.9, fio2=30, etco2=38)
# Target shift at full severity, per scenario.
_SHIFT: dict[str, dict[str, float]] = {
    "stable": {},
    "device-disconnect": {},
    "sepsis": {"hr": 42, "rr": 10, "spo2": -4, "sbp": -38, "dbp": -26, "temp": 2.0},
    "respiratory-failure": {"rr": 16, "spo2": -12, "hr": 22, "fio2": 40, "etco2": 22},
    "hypotension": {"sbp": -45, "dbp": -28, "hr": 25},
}
# Relaxation time (s) and noise scale of each vital.
_DYNAMICS = {
    "hr": (20.0, 1.5), "rr": (30.0, 0.8), "spo2": (40.0, 0.4), "sbp": (30.0, 2.0),
    "dbp": (30.0, 1.5), "temp": (600.0, 0.02), "fio2": (120.0, 0.0), "etco2": (60.0, 0.6),
}
_LIMITS = {
    "hr": (25, 220), "rr": (4, 60), "spo2": (50, 100), "sbp": (50, 230), "dbp": (25, 140),
    "temp": (33, 42), "fio2": (21, 100), "etco2": (10, 90),
}


class Physiology:
    """One bed's moving physiology; call :meth:`advance` with the elapsed seconds."""

    def __init__(self, scenario: str = "stable", seed: int = 0, *, onset_s: float = 60.0,
                 ramp_s: float = 300.0, disconnect_s: float = 60.0) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; one of {SCENARIOS}")
        self.scenario = scenario
        self.onset_s = onset_s
        self.ramp_s = ramp_s
        self.disconnect_s = disconnect_s
        self.t = 0.0
        self._rng = random.Random(seed)
        jitter = {k: self._rng.gauss(0, s * 2) for k, (_, s) in _DYNAMICS.items()}
        self._base = replace(_BASELINE, **{k: getattr(_BASELINE, k) + v
                                          for k, v in jitter.items()})
        self.vitals = self._base
        self.expected = self._base

    def severity(self) -> float:
        """0 before the onset, rising linearly to 1 over ``ramp_s``."""
        return min(1.0, max(0.0, (self.t - self.onset_s) / self.ramp_s))

    def connected(self) -> bool:
        """False while a device-disconnect scenario holds the device silent."""
        if self.scenario != "device-disconnect":
            return True
        return not self.onset_s <= self.t < self.onset_s + self.disconnect_s

    def advance(self, dt: float) -> Vitals:
        if dt < 0:
            raise ValueError("time only moves forward")
        self.t += dt
        sev = self.severity()
        shift = _SHIFT[self.scenario]
        values = {}
        means = {}
        for name, (tau, noise) in _DYNAMICS.items():
            current = getattr(self.vitals, name)
            target = getattr(self._base, name) + shift.get(name, 0.0) * sev
            decay = math.exp(-dt / tau) if dt else 1.0
            sd = noise * math.sqrt(max(0.0, 1 - decay * decay))
            value = target + (current - target) * decay + self._rng.gauss(0, sd)
            lo, hi = _LIMITS[name]
            values[name] = min(hi, max(lo, value))
            means[name] = min(hi, max(lo, target + (getattr(self.expected, name) - target) * decay))
        for v in (values, means):
            if v["dbp"] > v["sbp"] - 15:
                v["dbp"] = v["sbp"] - 15
        self.vitals = Vitals(**values)
        self.expected = Vitals(**means)
        return self.vitals
