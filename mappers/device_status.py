"""Device-status Observations shared by every device feed: connection state and clock drift.

The connection state (``connected``, ``silent``, ``responding``, ``disconnected``) comes from
``mappers.pb840.connection_state_observation``; this module adds the clock-drift check: a
device whose own clock differs from the gateway's receipt time by more than its profile's
``clock_drift_limit_s`` yields a ``clock-drift`` status Observation (code ``clock-drift`` in
``urn:vitalgate:device-status``) with the drift in seconds, which the alerting engine turns
into a technical alert (``inference.technical.CLOCK_DRIFT``). A drift back within the limit
yields ``clock-ok``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

__all__ = ["DEVICE_STATUS_SYSTEM", "clock_drift_observation", "clock_drift_s"]

DEVICE_STATUS_SYSTEM = "urn:vitalgate:device-status"
_LOCAL_CATEGORY = "urn:vitalgate:observation-category"


def clock_drift_s(device_time: datetime, received_at: datetime) -> float:
    """Device clock minus gateway receipt time, in seconds (positive: device ahead)."""
    return (device_time - received_at).total_seconds()


def clock_drift_observation(device_ref: str, drift_s: float, limit_s: float, at: datetime,
                            patient_ref: str | None = None) -> dict[str, Any]:
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    status = "clock-drift" if abs(drift_s) > limit_s else "clock-ok"
    key = f"{device_ref}|clock|{int(at.timestamp() * 1000)}"
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "clk-" + hashlib.sha256(key.encode()).hexdigest()[:32],
        "status": "final",
        "category": [{"coding": [{"system": _LOCAL_CATEGORY, "code": "device-info",
                                  "display": "Device information"}]}],
        "code": {"coding": [{"system": DEVICE_STATUS_SYSTEM, "code": "clock-drift",
                             "display": "Device clock offset from gateway time"}],
                 "text": "Device clock drift"},
        "effectiveDateTime": at.isoformat(),
        "device": {"reference": device_ref},
        "valueQuantity": {"value": round(drift_s, 3), "unit": "s",
                          "system": "http://unitsofmeasure.org", "code": "s"},
        "component": [{"code": {"coding": [{"system": DEVICE_STATUS_SYSTEM, "code": "status"}]},
                       "valueCodeableConcept": {"coding": [{"system": DEVICE_STATUS_SYSTEM,
                                                            "code": status}]}}],
        "referenceRange": [{"low": {"value": -limit_s, "unit": "s", "system": "http://unitsofmeasure.org",
                                    "code": "s"},
                            "high": {"value": limit_s, "unit": "s", "system": "http://unitsofmeasure.org",
                                     "code": "s"}}],
    }
    if status == "clock-drift":
        obs["interpretation"] = [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
            "code": "A", "display": "Abnormal"}]}]
    if patient_ref:
        obs["subject"] = {"reference": patient_ref}
    return obs
