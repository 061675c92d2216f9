"""Model features computed from a patient's window, shared by training and runtime.

The training script (``scripts/train_model.py``) builds windows from synthetic samples and calls
``features_from_window`` too, so the model sees at run time exactly the features it was fitted on.

Features, in order (``FEATURES``): the latest heart rate, respiration rate, SpO2, systolic BP,
temperature and FiO2, and the 15-minute least-squares slopes (per minute) of heart rate,
respiration rate, SpO2 and systolic BP.  A missing value is imputed with a normal adult value
(``NORMAL``) and a missing slope (or one over less than 10 minutes of data) with 0; the names
of imputed features are reported so the caller can decide to skip scoring a patient with too
little data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from inference.vitals import Param
from inference.window import PatientWindow

__all__ = ["FEATURES", "NORMAL", "FeatureVector", "features_from_window"]

_LATEST: tuple[tuple[str, Param, float], ...] = (
    ("hr", Param.HEART_RATE, 75.0),
    ("rr", Param.RESP_RATE, 16.0),
    ("spo2", Param.SPO2, 97.0),
    ("sbp", Param.SYSTOLIC_BP, 120.0),
    ("temp", Param.TEMPERATURE, 37.0),
    ("fio2", Param.FIO2, 21.0),
)
_SLOPES: tuple[tuple[str, Param], ...] = (
    ("hr_slope15", Param.HEART_RATE),
    ("rr_slope15", Param.RESP_RATE),
    ("spo2_slope15", Param.SPO2),
    ("sbp_slope15", Param.SYSTOLIC_BP),
)
FEATURES: tuple[str, ...] = tuple(n for n, _, _ in _LATEST) + tuple(n for n, _ in _SLOPES)
NORMAL: dict[str, float] = {n: v for n, _, v in _LATEST}
MAX_AGE = timedelta(minutes=15)
SLOPE_SPAN = timedelta(minutes=15)
# A slope needs at least 10 of its 15 minutes: over the first minutes after admission (or a
# restart) a noisy handful of values gives slopes the model reads as deterioration.  Training
# snapshots always have the full 15 minutes, so the shipped model is unchanged by this guard.
MIN_SLOPE_SPAN = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class FeatureVector:
    values: tuple[float, ...]
    imputed: tuple[str, ...]
    observation_ids: tuple[str, ...]


def features_from_window(window: PatientWindow, at: datetime) -> FeatureVector:
    values: list[float] = []
    imputed: list[str] = []
    ids: list[str] = []
    for name, param, normal in _LATEST:
        sample = window.latest(param, at, MAX_AGE)
        if sample is None:
            values.append(normal)
            imputed.append(name)
        else:
            values.append(sample.value)
            ids.append(sample.observation_id)
    for name, param in _SLOPES:
        slope = window.trend(param, SLOPE_SPAN, at, MIN_SLOPE_SPAN)
        values.append(0.0 if slope is None else slope)
        if slope is None:
            imputed.append(name)
    return FeatureVector(tuple(values), tuple(imputed), tuple(dict.fromkeys(ids)))
