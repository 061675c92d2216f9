"""Turn a decoded ventilator record into FHIR R4B resource dicts (Device + Observations).

Codes come from the profile: LOINC first where a vital-signs code exists (category
``vital-signs``), then the MDC code, then the vendor field code, so nothing is lost. Values
are in UCUM after the profile's conversion (litres become mL). Identifiers are
deterministic (device, code, receipt time), so a re-sent record updates rather than
duplicates. Blank and ``OFF`` fields produce no Observation; an implausible value (outside
the profile's validity range) produces one with ``dataAbsentReason`` ``error``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from mappers.pb840.decoder import DecodedVentRecord, VentValue
from mappers.profile_schema import LOINC_SYSTEM, MDC_SYSTEM, Profile
from mappers.terminology import VENDOR_CODE_PREFIX

__all__ = [
    "connection_state_observation",
    "fhir_id",
    "vendor_code_system",
    "vent_device_resource",
    "vent_record_to_fhir",
]

OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LOCAL_CATEGORY = "urn:vitalgate:observation-category"
UCUM = "http://unitsofmeasure.org"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
SERIAL_SYSTEM = "urn:vitalgate:device-serial"

_LOCAL_CATEGORY_BY_KIND = {
    "measured": ("device-measurement", "Device measurement"),
    "setting": ("device-setting", "Device setting"),
    "alarm-limit": ("device-alarm-limit", "Device alarm limit"),
    "alarm-status": ("device-alarm", "Device alarm status"),
    "text": ("device-info", "Device information"),
    "identity": ("device-info", "Device information"),
}

Resource = dict[str, Any]


def vendor_code_system(profile: Profile) -> str:
    """The code system URI of the profile's own field codes (``RECORD-field``)."""
    return f"{VENDOR_CODE_PREFIX}{profile.coding.code_system.lower()}"


def vent_device_resource(record: DecodedVentRecord, profile: Profile,
                         patient_ref: str | None = None) -> Resource:
    device: Resource = {
        "resourceType": "Device",
        "id": _fhir_id(record.device_id),
        "identifier": [{"system": f"{SERIAL_SYSTEM}:{profile.vendor.lower()}",
                        "value": record.serial}],
        "status": "active",
        "manufacturer": profile.manufacturer,
        "deviceName": [{"name": profile.model_name(record.model), "type": "model-name"}],
        "modelNumber": record.model,
        "serialNumber": record.serial,
        "type": {"text": profile.device_type.replace("-", " ").capitalize()},
    }
    if patient_ref:
        device["patient"] = {"reference": patient_ref}
    return device


def vent_record_to_fhir(
    record: DecodedVentRecord,
    profile: Profile,
    patient_ref: str | None = None,
    *,
    include_settings: bool = True,
    include_alarms: bool = True,
) -> list[Resource]:
    """Device first, then one Observation per mapped value, the mode and the alarm panel."""
    device = vent_device_resource(record, profile, patient_ref)
    ctx = _Context(record, profile, patient_ref, f"Device/{device['id']}")
    out: list[Resource] = [device]
    mode_fields = set(profile.record(record.record_type).mode_fields)
    for v in record.values:
        if v.value is None or v.field in mode_fields:
            continue  # the mode fields become one composed mode Observation below
        if v.entry.kind in ("setting", "alarm-limit") and not include_settings:
            continue
        out.append(_value_observation(ctx, v))
    if include_settings and record.mode.composed:
        out.append(_mode_observation(ctx))
    if include_alarms and record.alarms:
        out.append(_alarm_observation(ctx))
    return out


class _Context:
    def __init__(self, record: DecodedVentRecord, profile: Profile, patient_ref: str | None,
                 device_ref: str) -> None:
        self.record = record
        self.profile = profile
        self.patient_ref = patient_ref
        self.device_ref = device_ref
        self.stamp = str(int(record.received_at.timestamp() * 1000))
        self.system = vendor_code_system(profile)

    def base(self, key: str, category: list[Resource]) -> Resource:
        obs: Resource = {
            "resourceType": "Observation",
            "id": _fhir_id(self.record.device_id, key.replace("_", "-"), self.stamp),
            "status": "final",
            "category": category,
            "effectiveDateTime": self.record.received_at.isoformat(),
            "device": {"reference": self.device_ref},
        }
        if self.patient_ref:
            obs["subject"] = {"reference": self.patient_ref}
        return obs

    def vendor_coding(self, suffix: str, display: str) -> Resource:
        return {"system": self.system, "code": f"{self.record.record_type}-{suffix}",
                "display": display}


def _value_observation(ctx: _Context, v: VentValue) -> Resource:
    e = v.entry
    obs = ctx.base(e.key, _category(e.kind, e.vital_sign))
    codings: list[Resource] = []
    if e.loinc:
        codings.append({"system": LOINC_SYSTEM, "code": e.loinc,
                        "display": e.loinc_display or e.display})
    if e.mdc:
        codings.append({"system": MDC_SYSTEM, "code": e.mdc, "display": e.mdc_refid})
    codings.append(ctx.vendor_coding(str(v.field), e.label))
    obs["code"] = {"coding": codings, "text": e.display}
    if isinstance(v.value, str):
        obs["valueString"] = v.value
    elif not v.valid:
        obs["dataAbsentReason"] = {"coding": [{"system": DATA_ABSENT, "code": "error"}],
                                   "text": f"implausible value {v.raw} reported"}
    else:
        obs["valueQuantity"] = {"value": _number(v.value), "unit": v.unit,
                                "system": UCUM, "code": v.unit}
    if e.note:
        obs["note"] = [{"text": e.note}]
    return obs


def _mode_observation(ctx: _Context) -> Resource:
    mode = ctx.record.mode
    obs = ctx.base("mode-composed", _category("setting", False))
    fields = "+".join(str(n) for n in ctx.profile.record(ctx.record.record_type).mode_fields)
    obs["code"] = {"coding": [ctx.vendor_coding(fields, "Ventilation mode")],
                   "text": "Ventilation mode"}
    obs["valueString"] = mode.name
    if mode.name != mode.composed:
        obs["note"] = [{"text": f"reported as {mode.composed}"}]
    return obs


def _alarm_observation(ctx: _Context) -> Resource:
    obs = ctx.base("alarms", _category("alarm-status", False))
    obs["code"] = {"coding": [ctx.vendor_coding("alarms", "Ventilator alarm status")],
                   "text": "Ventilator alarm status"}
    active = ctx.record.active_alarms
    obs["valueString"] = ", ".join(a.label for a in active) if active else "no active alarm"
    obs["component"] = [
        {"code": {"coding": [ctx.vendor_coding(str(a.field), a.label)], "text": a.label},
         "valueString": a.state}
        for a in ctx.record.alarms
    ]
    return obs


CONNECTION_STATES = ("connected", "silent", "responding", "disconnected")
DEVICE_STATUS_SYSTEM = "urn:vitalgate:device-status"


def connection_state_observation(device_id: str, status: str, at: datetime, reason: str,
                                 patient_ref: str | None = None) -> Resource:
    """An Observation of a feed's connection state (``silent`` past the stale timeout...).

    The alerting engine turns ``silent`` / ``disconnected`` into a technical alert.
    """
    if status not in CONNECTION_STATES:
        raise ValueError(f"unknown connection state {status!r}")
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    obs: Resource = {
        "resourceType": "Observation",
        "id": _fhir_id(device_id, "conn", str(int(at.timestamp() * 1000))),
        "status": "final",
        "category": _category("text", False),
        "code": {"coding": [{"system": DEVICE_STATUS_SYSTEM, "code": "connection-state",
                             "display": "Device connection state"}],
                 "text": "Device connection state"},
        "effectiveDateTime": at.isoformat(),
        "device": {"reference": f"Device/{_fhir_id(device_id)}"},
        "valueCodeableConcept": {"coding": [{"system": DEVICE_STATUS_SYSTEM, "code": status}],
                                 "text": status},
        "note": [{"text": reason}],
    }
    if status in ("silent", "disconnected"):
        obs["interpretation"] = [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
            "code": "A", "display": "Abnormal"}]}]
    if patient_ref:
        obs["subject"] = {"reference": patient_ref}
    return obs


def _category(kind: str, vital_sign: bool) -> list[Resource]:
    if vital_sign:
        return [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs",
                             "display": "Vital Signs"}]}]
    code, display = _LOCAL_CATEGORY_BY_KIND[kind]
    return [{"coding": [{"system": LOCAL_CATEGORY, "code": code, "display": display}]}]


def _number(value: Any) -> int | float:
    as_float = float(value)
    return int(as_float) if as_float.is_integer() else as_float


_NOT_ID_ASCII = re.compile(r"[^0-9a-z.\-]")


def _fhir_id(*parts: str) -> str:
    """``a-b-c`` when it fits FHIR's 64-character id, else a stable hash of it."""
    raw = "-".join(parts).lower()
    if raw.isascii():  # the usual case, in one pass: the same result as the loop below
        cleaned = _NOT_ID_ASCII.sub("-", raw)
    else:
        cleaned = "".join(c if c.isalnum() or c in "-." else "-" for c in raw)
    if len(cleaned) <= 64:
        return cleaned
    return cleaned[:40] + "-" + hashlib.sha256(cleaned.encode()).hexdigest()[:23]


def fhir_id(*parts: str) -> str:
    """The resource id these mappers derive from natural keys (public for the device service)."""
    return _fhir_id(*parts)
