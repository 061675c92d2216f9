"""Waveforms as FHIR Observations with ``valueSampledData``, one resource per one-second segment.

Used by every feed that carries waveforms (HL7v2 NA arrays, IntelliVue sample arrays, the
PB840 waveform port). Samples are joined in bulk into the SampledData ``data`` string; they
never pass through the per-value vital-sign rules. Every waveform Observation carries the
category ``waveform`` in ``urn:vitalgate:observation-category`` and never ``vital-signs``,
and its code is a waveform MDC term the alerting engine does not read
(``inference.vitals`` matches numeric vital-sign codes only and needs ``valueQuantity``).

Waveform codes (ISO/IEEE 11073-10101, partition 2; the same terms as Philips NOM waves):
ECG leads I 131329 (0x0101), II 131330 (0x0102), III 131389 (0x013D), V 131395 (0x0143),
pleth 150452 (0x4BB4), arterial pressure 150036 (0x4A14), airway pressure 151792 (0x50F0),
airway flow 151764 (0x50D4).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = [
    "LOCAL_CATEGORY",
    "WAVEFORM_CATEGORY",
    "WAVES",
    "WaveSpec",
    "is_waveform",
    "one_second_segments",
    "waveform_observation",
]

MDC_SYSTEM = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
LOCAL_CATEGORY = "urn:vitalgate:observation-category"
WAVEFORM_CATEGORY: dict[str, Any] = {"coding": [{"system": LOCAL_CATEGORY, "code": "waveform",
                                                 "display": "Waveform"}]}
_NS = uuid.UUID("6f1c7a52-4c1e-4d59-9d0b-7c7a3f2e9b10")


@dataclass(frozen=True, slots=True)
class WaveSpec:
    """One waveform channel: MDC code and reference id, label and UCUM unit."""

    mdc: str
    refid: str
    label: str
    ucum: str


WAVES: dict[str, WaveSpec] = {
    "ecg_i": WaveSpec("131329", "MDC_ECG_ELEC_POTL_I", "ECG I", "uV"),
    "ecg_ii": WaveSpec("131330", "MDC_ECG_ELEC_POTL_II", "ECG II", "uV"),
    "ecg_iii": WaveSpec("131389", "MDC_ECG_ELEC_POTL_III", "ECG III", "uV"),
    "ecg_v": WaveSpec("131395", "MDC_ECG_ELEC_POTL_V", "ECG V", "uV"),
    "pleth": WaveSpec("150452", "MDC_PULS_OXIM_PLETH", "Pleth", "1"),
    "abp": WaveSpec("150036", "MDC_PRESS_BLD_ART_ABP", "ABP", "mm[Hg]"),
    "paw": WaveSpec("151792", "MDC_PRESS_AWAY", "Paw", "cm[H2O]"),
    "flow": WaveSpec("151764", "MDC_FLOW_AWAY", "Flow", "L/min"),
}


def is_waveform(obs: dict[str, Any]) -> bool:
    """True for an Observation this module (or a mapper using its category) produced."""
    for cat in obs.get("category", ()):
        for coding in cat.get("coding", ()):
            if coding.get("system") == LOCAL_CATEGORY and coding.get("code") == "waveform":
                return True
    return False


def _fmt(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def waveform_observation(*, spec: WaveSpec, device_ref: str, start: datetime, period_ms: float,
                         samples: Sequence[float | int] | str, subject_ref: str | None = None,
                         factor: float | None = None, origin: float = 0, status: str = "final",
                         extra_codings: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """One segment as an Observation; ``samples`` may already be a space-separated string.

    Physical value = ``origin`` + ``factor`` x sample (FHIR SampledData): a feed whose samples
    are scaled integers passes them as they came with its scale as origin and factor, so
    the ``data`` string is one join of integers, no per-sample arithmetic or formatting.
    The id is derived from device, code and segment start, so a re-sent segment updates.
    """
    if isinstance(samples, str):
        data, count = samples, samples.count(" ") + 1 if samples else 0
    else:
        data, count = " ".join(map(_fmt, samples)), len(samples)
    if count == 0 or period_ms <= 0:
        raise ValueError("a waveform segment needs samples and a positive period")
    end = start + timedelta(milliseconds=period_ms * count)
    key = f"{device_ref}|{spec.mdc}|{start.isoformat()}"
    sampled: dict[str, Any] = {"origin": {"value": _number(origin), "unit": spec.ucum, "system": UCUM,
                                          "code": spec.ucum},
                               "period": Decimal(str(round(period_ms, 6))), "dimensions": 1,
                               "data": data}
    if factor is not None and factor != 1:
        sampled["factor"] = Decimal(str(factor))
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(uuid.uuid5(_NS, key)),
        "status": status,
        "category": [WAVEFORM_CATEGORY],
        "code": {"coding": [{"system": MDC_SYSTEM, "code": spec.mdc, "display": spec.refid},
                            *extra_codings], "text": spec.label},
        "effectivePeriod": {"start": start.isoformat(), "end": end.isoformat()},
        "device": {"reference": device_ref},
        "valueSampledData": sampled,
    }
    if subject_ref:
        obs["subject"] = {"reference": subject_ref}
    return obs


def _number(value: float) -> int | Decimal:
    if float(value).is_integer():
        return int(value)
    return Decimal(str(round(value, 6)))


def one_second_segments(samples: Sequence[float | int], rate_hz: float, start: datetime
                        ) -> Iterator[tuple[datetime, Sequence[float | int]]]:
    """Cut a sample run into one-second segments (the last may be shorter)."""
    per = max(1, round(rate_hz))
    for i in range(0, len(samples), per):
        yield start + timedelta(seconds=i / rate_hz), samples[i : i + per]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
