"""Technical alerts from device status: a feed gone stale, a device disconnected, a drifting clock.

The gateway reports what it knows about a device (``DeviceStatus``); this module turns it into
conditions for the same ``AlarmTracker`` as the physiological rules.  They fire at once and clear
at once (no persistence, no clear period): the state is observed, not estimated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from inference.alarms import AlarmPolicy, Evaluation, Level
from inference.rules import SEVERITY_LEVEL, ConditionResult
from inference.ruleset import TechnicalSettings

__all__ = [
    "CLOCK_DRIFT",
    "DISCONNECTED",
    "FEED_STALE",
    "DeviceStatus",
    "evaluate_technical",
]

FEED_STALE = "technical-feed-stale"
DISCONNECTED = "technical-disconnected"
CLOCK_DRIFT = "technical-clock-drift"
_POLICY = AlarmPolicy(persistence_s=0.0, clear_s=0.0, deescalate_s=0.0, update_interval_s=3600.0)


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """What the gateway knows about one device feeding one patient, at ``time``."""

    device_id: str
    patient_id: str
    time: datetime
    connected: bool
    last_data: datetime | None = None
    device_clock: datetime | None = None  # the device's own time stamp of its latest message


def evaluate_technical(settings: TechnicalSettings, status: DeviceStatus) -> list[ConditionResult]:
    level = SEVERITY_LEVEL[settings.severity]
    stale = status.last_data is None or (
        (status.time - status.last_data).total_seconds() > settings.stale_after_s)
    drift = status.last_data is not None and status.device_clock is not None and abs(
        (status.device_clock - status.last_data).total_seconds()) > settings.max_clock_drift_s
    flags = {
        DISCONNECTED: not status.connected,
        FEED_STALE: status.connected and stale,
        CLOCK_DRIFT: drift,
    }
    return [
        ConditionResult(
            condition,
            Evaluation(status.time, level if on else Level.NONE, (), None, status.device_id),
            _POLICY,
        )
        for condition, on in flags.items()
    ]
