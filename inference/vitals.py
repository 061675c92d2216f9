"""Vital-sign samples: the engine's input type, and the reader that turns an Observation into samples.

The engine never works on FHIR dicts past this module: ``sample_from_observation`` reads a
vital-signs Observation (as produced by ``mappers/`` or posted over REST) into frozen
``VitalSample`` values, one per parameter it recognises.

Codes recognised (MDC = ISO/IEEE 11073-10101, system ``urn:iso:std:iso:11073:10101``):

==============  ==========================================  =====================================
parameter       MDC                                         LOINC
==============  ==========================================  =====================================
heart_rate      147842 ECG HR, 149530 pleth pulse,          8867-4 (HR), 8889-8 (pulse by oximetry)
                149514 pulse, 149546 NBP pulse
resp_rate       151562 RESP_RATE, 151570 AWAY_RESP_RATE     9279-1
spo2            150456 PULS_OXIM_SAT_O2, 150324 SAT_O2_ART  59408-5, 2708-6
systolic_bp     150021 NBP, 150033 ART, 150037 ABP,         8480-6 (also as a component of the
                150017 generic (as code or component)       85354-9 BP panel), 76534-7, 76215-3
temperature     150344 TEMP, 150364 TEMP_BODY, 150368 core  8310-5, 8329-5, 8332-9, 60836-4
fio2            152196 CONC_AWAY_O2_INSP (ventilator)       3150-0 inhaled oxygen concentration
o2_therapy      --                                          3151-8 inhaled O2 flow rate (> 0 = on O2)
consciousness   --                                          67775-7 level of responsiveness (ACVPU)
==============  ==========================================  =====================================

MDC codes were checked against the project's reference tables (shared/reference/devices-and-hl7v2.md)
and public RTMMS-derived code tables (152196 for MDC_CONC_AWAY_O2_INSP). When an Observation carries
both an MDC and a LOINC coding, the MDC code is kept as ``source_code`` because it tells the sources
apart (ECG versus pleth pulse), which NEWS2's source priority needs.

Consciousness is encoded as a float (A=0, C=1, V=2, P=3, U=4) from a single-letter code or text, or
from the SNOMED findings 248234008 alert, 130987000 acute confusion, 255373000 verbal,
450847001 pain, 422768004 unresponsive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TypeGuard

__all__ = [
    "ACVPU_VALUES",
    "MDC_SYSTEM",
    "LOINC_SYSTEM",
    "Param",
    "VitalSample",
    "is_json_object",
    "sample_from_observation",
]

MDC_SYSTEM = "urn:iso:std:iso:11073:10101"
LOINC_SYSTEM = "http://loinc.org"
SNOMED_SYSTEM = "http://snomed.info/sct"


class Param(StrEnum):
    """A physiological parameter the rules and the model understand."""

    HEART_RATE = "heart_rate"
    RESP_RATE = "resp_rate"
    SPO2 = "spo2"
    SYSTOLIC_BP = "systolic_bp"
    TEMPERATURE = "temperature"
    FIO2 = "fio2"
    O2_THERAPY = "o2_therapy"
    CONSCIOUSNESS = "consciousness"


@dataclass(frozen=True, slots=True)
class VitalSample:
    """One value of one parameter for one patient; ``source_code`` is ``mdc:<code>`` or ``loinc:<code>``."""

    patient_id: str
    param: Param
    value: float
    unit: str
    time: datetime
    source_code: str
    observation_id: str
    device_id: str | None = None


# (system prefix, code) -> parameter.  Prefixes: "mdc" and "loinc".
_CODES: dict[tuple[str, str], Param] = {
    **{("mdc", c): Param.HEART_RATE for c in ("147842", "149530", "149514", "149546")},
    **{("loinc", c): Param.HEART_RATE for c in ("8867-4", "8889-8")},
    **{("mdc", c): Param.RESP_RATE for c in ("151562", "151570")},
    ("loinc", "9279-1"): Param.RESP_RATE,
    **{("mdc", c): Param.SPO2 for c in ("150456", "150324")},
    **{("loinc", c): Param.SPO2 for c in ("59408-5", "2708-6")},
    **{("mdc", c): Param.SYSTOLIC_BP for c in ("150021", "150033", "150037", "150017")},
    **{("loinc", c): Param.SYSTOLIC_BP for c in ("8480-6", "76534-7", "76215-3")},
    **{("mdc", c): Param.TEMPERATURE for c in ("150344", "150364", "150368")},
    **{("loinc", c): Param.TEMPERATURE for c in ("8310-5", "8329-5", "8332-9", "60836-4")},
    ("mdc", "152196"): Param.FIO2,
    ("loinc", "3150-0"): Param.FIO2,
    ("loinc", "3151-8"): Param.O2_THERAPY,
    ("loinc", "67775-7"): Param.CONSCIOUSNESS,
}
_PREFIX = {MDC_SYSTEM: "mdc", LOINC_SYSTEM: "loinc"}
_SKIPPED_STATUS = frozenset({"entered-in-error", "cancelled", "registered"})

ACVPU_VALUES: dict[str, float] = {"A": 0.0, "C": 1.0, "V": 2.0, "P": 3.0, "U": 4.0}
_SNOMED_ACVPU = {
    "248234008": "A",
    "130987000": "C",
    "255373000": "V",
    "450847001": "P",
    "422768004": "U",
}


def sample_from_observation(obs: Mapping[str, object]) -> list[VitalSample]:
    """Read the vital-sign values of one Observation dict; unknown codes give an empty list.

    Observations without a Patient subject, an id, or an aware effective time are ignored: a
    sample without a patient or a time cannot be placed in a window.
    """
    if obs.get("resourceType") != "Observation" or obs.get("status") in _SKIPPED_STATUS:
        return []
    patient_id = _ref_id(obs.get("subject"), "Patient")
    time = _effective_time(obs)
    obs_id = obs.get("id")
    if patient_id is None or time is None or not isinstance(obs_id, str):
        return []
    device_id = _ref_id(obs.get("device"), "Device")
    out: list[VitalSample] = []
    top = _sample(obs, patient_id, time, obs_id, device_id)
    if top is not None:
        out.append(top)
    for comp in _list(obs.get("component")):
        if is_json_object(comp):
            sample = _sample(comp, patient_id, time, obs_id, device_id)
            if sample is not None:
                out.append(sample)
    return out


def is_json_object(value: object) -> TypeGuard[Mapping[str, object]]:
    """A JSON object as parsed (a dict) or any Mapping.

    The exact type check comes first: the ABC check is ~5x slower, and this runs on every element
    of every Observation the engine reads."""
    return type(value) is dict or isinstance(value, Mapping)


def _sample(element: Mapping[str, object], patient_id: str, time: datetime, obs_id: str,
            device_id: str | None) -> VitalSample | None:
    match = _match_code(element.get("code"))
    if match is None:
        return None
    param, source_code = match
    read = _read_value(element, param)
    if read is None:
        return None
    value, unit = read
    return VitalSample(patient_id, param, value, unit, time, source_code, obs_id, device_id)


def _match_code(code: object) -> tuple[Param, str] | None:
    """Prefer an MDC coding (it distinguishes sources), then LOINC."""
    if not is_json_object(code):
        return None
    best: tuple[int, Param, str, str] | None = None
    for coding in _list(code.get("coding")):
        if not is_json_object(coding):
            continue
        system = coding.get("system")
        prefix = _PREFIX.get(system if type(system) is str else str(system))
        value = coding.get("code")
        if prefix is None or not isinstance(value, str):
            continue
        param = _CODES.get((prefix, value))
        if param is not None:
            rank = 0 if prefix == "mdc" else 1
            if best is None or rank < best[0]:  # the first of the best rank, as min() picks
                best = (rank, param, prefix, value)
    if best is None:
        return None
    return best[1], f"{best[2]}:{best[3]}"


def _read_value(element: Mapping[str, object], param: Param) -> tuple[float, str] | None:
    if param is Param.CONSCIOUSNESS:
        letter = _acvpu_letter(element)
        return None if letter is None else (ACVPU_VALUES[letter], "{ACVPU}")
    quantity = element.get("valueQuantity")
    if not is_json_object(quantity):
        return None
    value = quantity.get("value")
    # mappers keep decimals exact (Decimal); stored JSON parses to int/float
    if not isinstance(value, int | float | Decimal) or isinstance(value, bool):
        return None
    unit = str(quantity.get("code") or quantity.get("unit") or "")
    return _normalise(param, float(value), unit)


def _normalise(param: Param, value: float, unit: str) -> tuple[float, str]:
    """Bring units onto the chart's: Cel for temperature, percent for FiO2 and SpO2."""
    if param is Param.TEMPERATURE and unit in ("[degF]", "degF", "°F"):
        return (value - 32.0) * 5.0 / 9.0, "Cel"
    if param in (Param.FIO2, Param.SPO2) and unit in ("1", "{ratio}") and value <= 1.0:
        return value * 100.0, "%"
    return value, unit


def _acvpu_letter(element: Mapping[str, object]) -> str | None:
    concept = element.get("valueCodeableConcept")
    if isinstance(concept, Mapping):
        for coding in _list(concept.get("coding")):
            if isinstance(coding, Mapping):
                code = str(coding.get("code", ""))
                if coding.get("system") == SNOMED_SYSTEM and code in _SNOMED_ACVPU:
                    return _SNOMED_ACVPU[code]
                if code.upper() in ACVPU_VALUES:
                    return code.upper()
        return _letter(concept.get("text"))
    return _letter(element.get("valueString"))


_ACVPU_WORDS = {
    "A": "A", "ALERT": "A",
    "C": "C", "CONFUSED": "C", "CONFUSION": "C", "NEW CONFUSION": "C",
    "V": "V", "VOICE": "V", "VERBAL": "V",
    "P": "P", "PAIN": "P",
    "U": "U", "UNRESPONSIVE": "U",
}


def _letter(text: object) -> str | None:
    """Exact words only: a free-text guess ("asleep") must not pass for Alert."""
    return _ACVPU_WORDS.get(text.strip().upper()) if isinstance(text, str) else None


# the last effective time text read, and what it gave
_last_time: tuple[str | None, datetime | None] = (None, None)


def _effective_time(obs: Mapping[str, object]) -> datetime | None:
    global _last_time
    raw = obs.get("effectiveDateTime") or obs.get("effectiveInstant")
    period = obs.get("effectivePeriod")
    if raw is None and is_json_object(period):
        raw = period.get("start")
    if not isinstance(raw, str) or "T" not in raw:
        return None
    last_raw, last_found = _last_time  # one read of one tuple: consistent even if another thread sets it
    if raw == last_raw:  # the numerics of one monitor frame share their time
        return last_found
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    found = parsed if parsed.tzinfo is not None else None
    _last_time = (raw, found)
    return found



def _ref_id(ref: object, resource_type: str) -> str | None:
    if not is_json_object(ref):
        return None
    value = ref.get("reference")
    prefix = resource_type + "/"
    if isinstance(value, str) and value.startswith(prefix):
        return value[len(prefix):].split("/_history")[0]
    return None


def _list(value: object) -> Sequence[object]:
    return value if isinstance(value, list) else ()
