"""Device-status Observations (``urn:vitalgate:device-status``) read as ``inference.DeviceStatus``.

The feeds write a ``connection-state`` Observation (``connected``, ``responding``, ``silent``,
``disconnected``; ``mappers.pb840``) and a ``clock-drift`` Observation (drift in seconds, status
``clock-drift`` / ``clock-ok``; ``mappers.device_status``).  Each report concerns only its own
conditions: a connection report updates ``technical-disconnected`` and ``technical-feed-stale``, a
clock report ``technical-clock-drift``.  Reports without a patient subject raise nothing (a
technical alert belongs to the patient whose monitoring is affected).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from inference import CLOCK_DRIFT, DISCONNECTED, FEED_STALE, DeviceStatus

DEVICE_STATUS_SYSTEM = "urn:vitalgate:device-status"
CONNECTION = frozenset({DISCONNECTED, FEED_STALE})
CLOCK = frozenset({CLOCK_DRIFT})


def _code(concept: object) -> str | None:
    if not isinstance(concept, Mapping):
        return None
    for coding in concept.get("coding") or ():
        if isinstance(coding, Mapping) and coding.get("system") == DEVICE_STATUS_SYSTEM:
            code = coding.get("code")
            return code if isinstance(code, str) else None
    return None


def _ref(value: object, prefix: str) -> str | None:
    ref = value.get("reference") if isinstance(value, Mapping) else None
    return ref.removeprefix(prefix) if isinstance(ref, str) and ref.startswith(prefix) else None


def device_status(obs: Mapping[str, Any]) -> tuple[DeviceStatus, frozenset[str]] | None:
    """The status a device-status Observation reports and the conditions it concerns, or None."""
    kind = _code(obs.get("code"))
    if kind not in ("connection-state", "clock-drift"):
        return None
    patient, device = _ref(obs.get("subject"), "Patient/"), _ref(obs.get("device"), "Device/")
    raw = obs.get("effectiveDateTime")
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00")) if isinstance(raw, str) else None
    except ValueError:
        at = None
    if patient is None or device is None or at is None or at.tzinfo is None:
        return None
    if kind == "connection-state":
        state = _code(obs.get("valueCodeableConcept"))
        if state not in ("connected", "responding", "silent", "disconnected"):
            return None
        last = None if state == "silent" else at
        return DeviceStatus(device, patient, at, state != "disconnected", last), CONNECTION
    drift = (obs.get("valueQuantity") or {}).get("value")
    if not isinstance(drift, int | float):
        return None
    return DeviceStatus(device, patient, at, True, at, at + timedelta(seconds=float(drift))), CLOCK
