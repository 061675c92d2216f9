"""IntelliVue poll results -> FHIR R4B dicts (Device, Observations, waveform Observations).

Numerics are looked up in the profile by NOM physio id (``[[codes]]``) and their unit code
checked against the profile's unit for that code (``[[units]]``, with its UCUM code and
factor). Valid values become ``valueQuantity``; a value whose MeasurementState has any of the
invalid bits (0xF800), or a FLOAT special (NaN, NRes, INF), becomes ``dataAbsentReason`` with
the state spelled out; values outside the profile's validity range likewise. Unknown physio
ids and unexpected units are not guessed: they are returned as problems for the caller to log
and keep as a dead letter. Waves (``[[waves]]``) become one waveform Observation per wave per
poll (about one second): the integer samples as sent, with the scale specification as the
SampledData origin and factor.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mappers.profile_schema import LOINC_SYSTEM, MDC_SYSTEM, CodeEntry, Profile, UnitEntry
from mappers.terminology import VENDOR_CODE_PREFIX
from mappers.waveform import WAVES, waveform_observation

from .messages import MdsCreateEvent, NumericValue, PollResult, WaveValue

__all__ = ["IntellivueMapping", "device_id_for", "intellivue_device", "poll_to_fhir"]

OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LOCAL_CATEGORY = "urn:vitalgate:observation-category"
UCUM = "http://unitsofmeasure.org"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
NOM_SYSTEM = f"{VENDOR_CODE_PREFIX}nom"
MAC_SYSTEM = "urn:vitalgate:device-mac"
STATE_SYSTEM = "urn:vitalgate:intellivue-measurement-state"
_NS = uuid.UUID("0d9b6a8e-2f7e-4f5b-8f0a-3c1e9f6d2a44")


@dataclass
class IntellivueMapping:
    resources: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def device_id_for(system_id: str) -> str:
    return f"intellivue-{system_id.lower()}"


def intellivue_device(mds: MdsCreateEvent, profile: Profile, location_ref: str | None = None) -> dict[str, Any]:
    system_id = mds.system_id or "unknown"
    device: dict[str, Any] = {
        "resourceType": "Device",
        "id": device_id_for(system_id),
        "identifier": [{"system": MAC_SYSTEM, "value": system_id}],
        "status": "active",
        "manufacturer": mds.manufacturer or profile.manufacturer,
        "deviceName": [{"name": mds.model or profile.model_name(profile.models[0]), "type": "model-name"}],
        "type": {"text": "Patient monitor"},
    }
    if mds.model:
        device["modelNumber"] = mds.model
    if mds.bed_label:
        device["note"] = [{"text": f"bed label on the monitor: {mds.bed_label}"}]
    if location_ref:
        device["location"] = {"reference": location_ref}
    return device


def poll_to_fhir(poll: PollResult, profile: Profile, device_ref: str, received_at: datetime,
                 subject_ref: str | None = None) -> IntellivueMapping:
    out = IntellivueMapping()
    for nu in poll.numerics:
        obs = _numeric(nu, profile, device_ref, received_at, out.problems)
        if obs is not None:
            if subject_ref:
                obs["subject"] = {"reference": subject_ref}
            out.resources.append(obs)
    for wave in poll.waves:
        obs = _wave(wave, profile, device_ref, received_at, subject_ref, out.problems)
        if obs is not None:
            out.resources.append(obs)
    return out


@dataclass(frozen=True, slots=True)
class _NumericCode:
    """What a physio id maps to under one profile, built once: the code and category objects are
    shared by every Observation of that code (treated as immutable, never edited in place)."""

    entry: CodeEntry
    unit: UnitEntry | None
    unit_code: str | None  # the profile's unit code for the entry, lower case hex
    category: list[dict[str, Any]]
    code: dict[str, Any]


# (id(profile), physio id) -> (the profile itself, so the id is never reused while cached; mapping)
_CODES: dict[tuple[int, int], tuple[Profile, _NumericCode | None]] = {}


def _numeric_code(profile: Profile, physio_id: int) -> _NumericCode | None:
    hit = _CODES.get((id(profile), physio_id))
    if hit is not None and hit[0] is profile:
        return hit[1]
    code = f"{physio_id:04x}"
    entry = profile.code_entry(code)
    found = None
    if entry is not None:
        unit = profile.unit(entry.unit) if entry.unit else None
        found = _NumericCode(entry, unit, unit.code.lower() if unit is not None else None, _category(entry),
                             {"coding": _codings(entry, code), "text": entry.display})
    if len(_CODES) < 10_000:
        _CODES[(id(profile), physio_id)] = (profile, found)
    return found


def _numeric(nu: NumericValue, profile: Profile, device_ref: str, at: datetime,
             problems: list[str]) -> dict[str, Any] | None:
    known = _numeric_code(profile, nu.physio_id)
    if known is None:
        problems.append(f"unknown physio id 0x{nu.physio_id:04x} (handle {nu.handle})")
        return None
    entry, unit = known.entry, known.unit
    if unit is None or known.unit_code != f"{nu.unit_code:04x}":
        problems.append(f"unexpected unit 0x{nu.unit_code:04x} for {entry.key} (expected 0x{entry.unit})")
        return None
    when = at.isoformat()
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(uuid.uuid5(_NS, f"{device_ref}|nom:{nu.physio_id:04x}|{when}")),
        "status": "final",
        "category": known.category,
        "code": known.code,
        "effectiveDateTime": when,
        "device": {"reference": device_ref},
    }
    reason = _absent_reason(nu, entry, unit.factor)
    if reason is None:
        value = nu.value * unit.factor  # type: ignore[operator]
        obs["valueQuantity"] = {"value": _number(value), "unit": unit.label or unit.ucum, "system": UCUM,
                                "code": unit.ucum}
    else:
        obs["dataAbsentReason"] = {"coding": [{"system": DATA_ABSENT, "code": "error"}], "text": reason}
    states = nu.state_names
    if states:
        obs["component"] = [{"code": {"coding": [{"system": STATE_SYSTEM, "code": "measurement-state"}]},
                             "valueString": ", ".join(states)}]
    return obs


def _absent_reason(nu: NumericValue, entry: CodeEntry, factor: float) -> str | None:
    if nu.value is None:
        return f"monitor reported {nu.special}"
    if not nu.valid:
        return "measurement state: " + ", ".join(nu.state_names)
    value = nu.value * factor
    lo, hi = entry.valid_min, entry.valid_max
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return f"implausible value {value:g} reported"
    return None


def _codings(entry: CodeEntry, code: str) -> list[dict[str, Any]]:
    codings: list[dict[str, Any]] = []
    if entry.loinc and entry.vital_sign:
        codings.append({"system": LOINC_SYSTEM, "code": entry.loinc,
                        "display": entry.loinc_display or entry.display})
    if entry.mdc:
        codings.append({"system": MDC_SYSTEM, "code": entry.mdc, "display": entry.mdc_refid})
    codings.append({"system": NOM_SYSTEM, "code": code, "display": entry.label})
    return codings


def _category(entry: CodeEntry) -> list[dict[str, Any]]:
    if entry.vital_sign:
        return [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]}]
    return [{"coding": [{"system": LOCAL_CATEGORY, "code": "device-measurement",
                         "display": "Device measurement"}]}]


def _wave(wave: WaveValue, profile: Profile, device_ref: str, received_at: datetime,
          subject_ref: str | None, problems: list[str]) -> dict[str, Any] | None:
    code = f"{wave.physio_id:04x}"
    entry = profile.wave_entry(code)
    if entry is None:
        problems.append(f"unknown wave physio id 0x{code} (handle {wave.handle})")
        return None
    if not wave.valid or not wave.period_ms:
        problems.append(f"wave 0x{code} without valid samples or sample period")
        return None
    spec = WAVES[entry.wave]
    start = received_at - timedelta(milliseconds=wave.period_ms * len(wave.samples))
    origin, factor = wave.origin_factor()
    # the monitor's integer samples as they came, its scale as SampledData origin and factor:
    # one join per segment, no per-sample arithmetic
    return waveform_observation(spec=spec, device_ref=device_ref, start=start, period_ms=wave.period_ms,
                                samples=" ".join(map(str, wave.samples)), origin=origin, factor=factor,
                                subject_ref=subject_ref,
                                extra_codings=[{"system": NOM_SYSTEM, "code": code, "display": entry.label}])


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 6)
