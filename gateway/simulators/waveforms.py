"""Synthetic waveforms driven by a bed's vitals: ECG lead II, pleth, arterial pressure,
airway pressure and flow. Each generator keeps its phase across calls, so consecutive
one-second blocks join without a seam; heart and breathing rates follow the physiology.

Values are integers in the wire units the simulated devices use (ECG in µV, pleth in
arbitrary units 0..1000, ABP in mmHg) or one-decimal floats (airway pressure cmH2O, flow
L/min). Shapes are plausible, not diagnostic. Each beat shape is tabulated once (``_TABLE``
points per beat) and looked up per sample: the simulators share the node's two cores in the
ward benchmark, so a sample costs an index, not five exponentials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gateway.simulators.physiology import Vitals

__all__ = ["FULL_MONITOR_RATES", "MONITOR_RATES", "VENT_RATE_HZ", "MonitorWaves", "VentWaves"]

MONITOR_RATES = {"ecg_ii": 250, "pleth": 125, "abp": 125}  # samples per second
# A fully equipped ICU monitor: four ECG leads at 500 Hz, pleth and ABP at 125 Hz (2,250 samples/s)
FULL_MONITOR_RATES = {"ecg_i": 500, "ecg_ii": 500, "ecg_iii": 500, "ecg_v": 500, "pleth": 125, "abp": 125}
_ECG_GAIN = {"ecg_i": 0.6, "ecg_ii": 1.0, "ecg_iii": 0.45, "ecg_v": 1.3}
VENT_RATE_HZ = 50  # the PB840 waveform port


def _gauss(x: float, mu: float, sigma: float) -> float:
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2)


def _ecg(phase: float) -> float:
    """One beat in µV over phase 0..1: P, QRS, T."""
    return (120 * _gauss(phase, 0.16, 0.025) - 150 * _gauss(phase, 0.29, 0.008)
            + 1100 * _gauss(phase, 0.31, 0.01) - 250 * _gauss(phase, 0.33, 0.01)
            + 300 * _gauss(phase, 0.58, 0.05))


def _pleth(phase: float) -> float:
    return 0.9 * _gauss(phase, 0.28, 0.09) + 0.35 * _gauss(phase, 0.55, 0.08)


_TABLE = 4096  # points per beat: ~0.25 ms at 60 bpm, finer than the 2 ms of a 500 Hz ECG
_ECG_TABLE = tuple(_ecg(i / _TABLE) for i in range(_TABLE))
_PLETH_TABLE = tuple(_pleth(i / _TABLE) for i in range(_TABLE))
_ABP_TABLE = tuple(min(1.0, _pleth((i / _TABLE + 0.9) % 1.0) / 0.95) for i in range(_TABLE))


def _phases(phase0: float, step: float, n: int) -> list[int]:
    """Table indices of ``n`` samples from ``phase0`` in steps of ``step`` (fractions of a beat)."""
    return [int(((phase0 + i * step) % 1.0) * _TABLE) for i in range(n)]


@dataclass
class MonitorWaves:
    """The monitor's three waves; :meth:`block` returns one second of each."""

    rates: dict[str, int] = field(default_factory=lambda: dict(MONITOR_RATES))
    _beat: dict[str, float] = field(default_factory=dict)

    def block(self, v: Vitals, seconds: float = 1.0) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        beat_hz = max(v.hr, 1.0) / 60.0
        for name, rate in self.rates.items():
            n = round(rate * seconds)
            phase0 = self._beat.get(name, 0.0)
            step = beat_hz / rate
            idx = _phases(phase0, step, n)
            if name in _ECG_GAIN:
                gain = _ECG_GAIN[name]
                out[name] = [round(_ECG_TABLE[i] * gain) for i in idx]
            elif name == "pleth":
                amp = 1000 * min(1.0, v.spo2 / 97)
                out[name] = [round(_PLETH_TABLE[i] * amp) for i in idx]
            else:  # arterial pressure between diastolic and systolic
                dbp, pp = v.dbp, v.sbp - v.dbp
                out[name] = [round(dbp + pp * _ABP_TABLE[i]) for i in idx]
            self._beat[name] = (phase0 + n * step) % 1.0
        return out


@dataclass
class VentWaves:
    """Airway pressure and flow at 50 Hz from set PEEP, peak pressure and breathing rate."""

    peep: float = 5.0
    _phase: float = 0.0

    def block(self, v: Vitals, ppeak: float, seconds: float = 1.0) -> tuple[list[float], list[float]]:
        n = round(VENT_RATE_HZ * seconds)
        breath_hz = max(v.rr, 4.0) / 60.0
        step = breath_hz / VENT_RATE_HZ
        paw, flow = [], []
        for i in range(n):
            ph = (self._phase + i * step) % 1.0
            if ph < 0.33:  # inspiration: pressure rises, square-ish flow
                paw.append(round(self.peep + (ppeak - self.peep) * min(1.0, ph / 0.1), 1))
                flow.append(round(45.0 * (1 - ph / 0.66), 1))
            else:  # expiration: pressure back to PEEP, decaying negative flow
                paw.append(round(self.peep + (ppeak - self.peep) * math.exp(-(ph - 0.33) * 40), 1))
                flow.append(round(-50.0 * math.exp(-(ph - 0.33) * 8), 1))
        self._phase = (self._phase + n * step) % 1.0
        return paw, flow
