"""NEWS2 (Royal College of Physicians 2017, Chart 1): sub-scores, total, clinical risk band.

Exactly per the chart.  Device values are floats, the chart is in integers (temperature in tenths),
so each value is first rounded HALF-UP to the chart precision with ``Decimal`` (Python's ``round``
rounds half to even: ``round(90.5) == 90`` would score an SBP of 90.5 as 3 instead of 2).  The
float goes through ``str`` first so that 35.05 is the decimal 35.05, not 35.04999...

A score is computed only when every parameter is present and recent enough; otherwise the result
is ``complete=False`` with ``total`` and ``band`` set to None and the missing parameters named.
Supplemental oxygen comes from a ventilator FiO2 above 21 % (after rounding) or an oxygen-therapy
observation (inhaled O2 flow > 0).  SpO2 scale 2 is used only when set for the patient.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from inference.vitals import ACVPU_VALUES, Param
from inference.window import PatientWindow

__all__ = [
    "DEFAULT_MAX_AGE",
    "NEWS2_PARAMETERS",
    "News2Config",
    "News2Inputs",
    "News2Result",
    "RiskBand",
    "SubScore",
    "compute_news2",
    "half_up",
    "news2_from_window",
    "risk_band",
    "score_air_or_oxygen",
    "score_consciousness",
    "score_pulse",
    "score_resp_rate",
    "score_spo2_scale1",
    "score_spo2_scale2",
    "score_systolic_bp",
    "score_temperature",
]

NEWS2_PARAMETERS = (
    "resp_rate", "spo2", "air_or_oxygen", "systolic_bp", "pulse", "consciousness", "temperature",
)


class RiskBand(StrEnum):
    """Clinical risk per the RCP 2017 response table."""

    LOW = "low"  # total 0-4 with no single parameter scoring 3
    LOW_MEDIUM = "low-medium"  # a single parameter scoring 3, total below 5
    MEDIUM = "medium"  # total 5-6
    HIGH = "high"  # total 7 or more


def half_up(value: float, places: int = 0) -> Decimal:
    """Round to ``places`` decimals, halves away from zero (the chart's convention)."""
    return Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def score_resp_rate(value: float) -> int:
    v = half_up(value)
    if v <= 8:
        return 3
    if v <= 11:
        return 1
    if v <= 20:
        return 0
    return 2 if v <= 24 else 3


def score_spo2_scale1(value: float) -> int:
    v = half_up(value)
    if v <= 91:
        return 3
    if v <= 93:
        return 2
    return 1 if v <= 95 else 0


def score_spo2_scale2(value: float, on_oxygen: bool) -> int:
    """Scale 2 (hypercapnic respiratory failure): high saturations score only on oxygen."""
    v = half_up(value)
    if v <= 83:
        return 3
    if v <= 85:
        return 2
    if v <= 87:
        return 1
    if v <= 92 or not on_oxygen:
        return 0
    if v <= 94:
        return 1
    return 2 if v <= 96 else 3


def score_air_or_oxygen(on_oxygen: bool) -> int:
    return 2 if on_oxygen else 0


def score_systolic_bp(value: float) -> int:
    v = half_up(value)
    if v <= 90:
        return 3
    if v <= 100:
        return 2
    if v <= 110:
        return 1
    return 0 if v <= 219 else 3


def score_pulse(value: float) -> int:
    v = half_up(value)
    if v <= 40:
        return 3
    if v <= 50:
        return 1
    if v <= 90:
        return 0
    if v <= 110:
        return 1
    return 2 if v <= 130 else 3


def score_consciousness(acvpu: str) -> int:
    """Alert scores 0; new Confusion, Voice, Pain or Unresponsive score 3."""
    letter = acvpu.strip().upper()
    if letter not in ACVPU_VALUES:
        raise ValueError(f"not an ACVPU letter: {acvpu!r}")
    return 0 if letter == "A" else 3


def score_temperature(value: float) -> int:
    v = half_up(value, 1)
    if v <= Decimal("35.0"):
        return 3
    if v <= Decimal("36.0"):
        return 1
    if v <= Decimal("38.0"):
        return 0
    return 1 if v <= Decimal("39.0") else 2


@dataclass(frozen=True, slots=True)
class SubScore:
    """One row of the chart: the parameter, the value as banded (rounded), and its score."""

    parameter: str
    value: str
    score: int


@dataclass(frozen=True, slots=True)
class News2Inputs:
    """Chart inputs; None means missing.  ``consciousness`` is an ACVPU letter."""

    resp_rate: float | None = None
    spo2: float | None = None
    on_oxygen: bool | None = None
    systolic_bp: float | None = None
    pulse: float | None = None
    consciousness: str | None = None
    temperature: float | None = None
    spo2_scale: int = 1


@dataclass(frozen=True, slots=True)
class News2Result:
    """A NEWS2 evaluation; ``total`` and ``band`` are None unless ``complete``."""

    complete: bool
    total: int | None
    band: RiskBand | None
    subscores: tuple[SubScore, ...]
    missing: tuple[str, ...]
    spo2_scale: int
    observation_ids: tuple[str, ...] = ()

    @property
    def max_subscore(self) -> int:
        return max((s.score for s in self.subscores), default=0)


def risk_band(total: int, subscores: tuple[SubScore, ...]) -> RiskBand:
    if total >= 7:
        return RiskBand.HIGH
    if total >= 5:
        return RiskBand.MEDIUM
    if any(s.score == 3 for s in subscores):
        return RiskBand.LOW_MEDIUM
    return RiskBand.LOW


def compute_news2(inputs: News2Inputs, observation_ids: tuple[str, ...] = ()) -> News2Result:
    """Score what is present; mark the result incomplete when anything is missing."""
    if inputs.spo2_scale not in (1, 2):
        raise ValueError(f"SpO2 scale must be 1 or 2, not {inputs.spo2_scale}")
    rows: list[SubScore] = []
    missing: list[str] = []

    def add(name: str, value: float | None, scorer: object, places: int = 0) -> None:
        if value is None:
            missing.append(name)
        else:
            rows.append(SubScore(name, str(half_up(value, places)), scorer(value)))  # type: ignore[operator]

    add("resp_rate", inputs.resp_rate, score_resp_rate)
    if inputs.spo2 is not None and inputs.spo2_scale == 2 and inputs.on_oxygen is None:
        missing.append("spo2")  # scale 2 cannot be banded above 92 without knowing air/oxygen
    elif inputs.spo2_scale == 2:
        add("spo2", inputs.spo2, lambda v: score_spo2_scale2(v, bool(inputs.on_oxygen)))
    else:
        add("spo2", inputs.spo2, score_spo2_scale1)
    if inputs.on_oxygen is None:
        missing.append("air_or_oxygen")
    else:
        label = "oxygen" if inputs.on_oxygen else "air"
        rows.append(SubScore("air_or_oxygen", label, score_air_or_oxygen(inputs.on_oxygen)))
    add("systolic_bp", inputs.systolic_bp, score_systolic_bp)
    add("pulse", inputs.pulse, score_pulse)
    if inputs.consciousness is None:
        missing.append("consciousness")
    else:
        letter = inputs.consciousness.strip().upper()
        rows.append(SubScore("consciousness", letter, score_consciousness(letter)))
    add("temperature", inputs.temperature, score_temperature, 1)
    subscores = tuple(sorted(rows, key=lambda s: NEWS2_PARAMETERS.index(s.parameter)))
    if missing:
        return News2Result(False, None, None, subscores, tuple(missing), inputs.spo2_scale,
                           observation_ids)
    total = sum(s.score for s in subscores)
    return News2Result(True, total, risk_band(total, subscores), subscores, (),
                       inputs.spo2_scale, observation_ids)


DEFAULT_MAX_AGE: Mapping[str, timedelta] = {
    "resp_rate": timedelta(minutes=15),
    "spo2": timedelta(minutes=15),
    "pulse": timedelta(minutes=15),
    "systolic_bp": timedelta(hours=1),
    "temperature": timedelta(hours=4),
    "consciousness": timedelta(hours=12),
    "air_or_oxygen": timedelta(hours=12),
}


@dataclass(frozen=True, slots=True)
class News2Config:
    """How a window becomes chart inputs: maximum age per parameter, and the air default.

    ``assume_air_when_unknown`` exists for units that chart oxygen only when it is given; it is
    off by default so a missing air/oxygen entry makes the score incomplete, never silently 0.
    """

    max_age: Mapping[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_MAX_AGE))
    assume_air_when_unknown: bool = False


_WINDOW_PARAMS = {
    "resp_rate": Param.RESP_RATE,
    "spo2": Param.SPO2,
    "systolic_bp": Param.SYSTOLIC_BP,
    "pulse": Param.HEART_RATE,
    "temperature": Param.TEMPERATURE,
    "consciousness": Param.CONSCIOUSNESS,
}
_LETTERS = {value: letter for letter, value in ACVPU_VALUES.items()}


def news2_from_window(
    window: PatientWindow, at: datetime, config: News2Config, spo2_scale: int = 1
) -> News2Result:
    """Score the patient at ``at`` from samples no older than their maximum age."""
    values: dict[str, float] = {}
    ids: list[str] = []
    for name, param in _WINDOW_PARAMS.items():
        sample = window.latest(param, at, config.max_age.get(name))
        if sample is not None:
            values[name] = sample.value
            ids.append(sample.observation_id)
    on_oxygen = _on_oxygen(window, at, config, ids)
    letter = values.get("consciousness")
    inputs = News2Inputs(
        resp_rate=values.get("resp_rate"),
        spo2=values.get("spo2"),
        on_oxygen=on_oxygen,
        systolic_bp=values.get("systolic_bp"),
        pulse=values.get("pulse"),
        consciousness=None if letter is None else _LETTERS.get(letter, "U"),
        temperature=values.get("temperature"),
        spo2_scale=spo2_scale,
    )
    return compute_news2(inputs, tuple(dict.fromkeys(ids)))


def _on_oxygen(
    window: PatientWindow, at: datetime, config: News2Config, ids: list[str]
) -> bool | None:
    """Oxygen if FiO2 rounds above 21 % or an O2-flow observation is above 0; air if known."""
    max_age = config.max_age.get("air_or_oxygen")
    fio2 = window.latest(Param.FIO2, at, max_age)
    therapy = window.latest(Param.O2_THERAPY, at, max_age)
    known = [s for s in (fio2, therapy) if s is not None]
    ids.extend(s.observation_id for s in known)
    if (fio2 is not None and half_up(fio2.value) > 21) or (therapy is not None and therapy.value > 0):
        return True
    if known or config.assume_air_when_unknown:
        return False
    return None
