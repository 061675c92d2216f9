"""IHE PCD waveform OBX (value type NA): sampling attributes and the waveform category.

An NA OBX (e.g. ``131330^MDC_ECG_ELEC_POTL_II^MDC``, OBX-5 ``12^15^-3...``) becomes one
Observation with ``valueSampledData``; its child OBX one level down carrying
``MDC_ATTR_SAMP_RATE`` (samples per second) or ``MDC_ATTR_TIME_PD_SAMP`` (sample period)
sets ``SampledData.period`` (ms) and produces no Observation of its own (IHE PCD Waveform
Content Module). The samples are checked and joined in bulk, never one by one.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import DATA_TYPE_ERROR, HL7Error
from .fields import NULL
from .tokenizer import Segment

__all__ = ["WAVEFORM_CATEGORY", "bulk_samples", "sampling_period_ms"]

WAVEFORM_CATEGORY = "waveform"
_RATE_IDS = frozenset({"MDC_ATTR_SAMP_RATE", "68220"})
_PERIOD_IDS = frozenset({"MDC_ATTR_TIME_PD_SAMP", "67981"})
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_SAMPLES = re.compile(rf"(?:{_NUMBER})?(?:\^(?:{_NUMBER})?)*")


def bulk_samples(raw: str, component: str, where: str) -> str:
    """OBX-5 of an NA value -> SampledData ``data`` (empty components become ``E``)."""
    if component != "^":
        raw = raw.replace(component, "^")
    raw = raw.replace(f"^{NULL}", "^").replace(f"{NULL}^", "^") if NULL in raw else raw
    if not _SAMPLES.fullmatch(raw):
        raise HL7Error(DATA_TYPE_ERROR, f"not a numeric array: {raw[:40]!r}", where)
    parts = raw.split("^")
    if all(parts):
        return " ".join(parts)
    return " ".join(p or "E" for p in parts)


def sampling_period_ms(obx: Segment) -> Decimal | None:
    """The sample period in ms when ``obx`` is a sampling attribute of a waveform, else None."""
    code, refid = obx.get(3, 1), obx.get(3, 2)
    is_rate = code in _RATE_IDS or refid in _RATE_IDS
    if not (is_rate or code in _PERIOD_IDS or refid in _PERIOD_IDS):
        return None
    try:
        value = Decimal(obx.get(5).strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or value <= 0:
        return None
    unit = f"{obx.get(6, 1)} {obx.get(6, 2)}".upper()
    if is_rate:
        return (Decimal(1000) / value).quantize(Decimal("0.000001")).normalize()
    if "MILLI" in unit or unit.endswith(" MS") or "MS " in unit:
        return value
    return value * 1000


def apply_period(obs: dict[str, Any], period_ms: Decimal) -> None:
    obs["valueSampledData"]["period"] = period_ms
