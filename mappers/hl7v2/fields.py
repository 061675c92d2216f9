"""HL7v2 data types to FHIR datatypes: DTM/TS times, CWE codes, deterministic ids."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from ..terminology import LOINC_SYSTEM, MDC_SYSTEM, SNOMED_SYSTEM, UCUM_SYSTEM
from .escape import Encoding, unescape

# Fixed namespace: ids must stay stable across releases, or re-sent data would duplicate.
ID_NAMESPACE = uuid.UUID("6f9d1d2e-3b8c-5a57-9c61-7a1f0c4e2b10")
_NS_BYTES = ID_NAMESPACE.bytes
ORIGINAL_TIME_URL = "http://vitalgate.org/fhir/StructureDefinition/hl7v2-original-time"
NULL = '""'

_DTM = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(\.\d{1,4})?)?)?)?)?)?"
    r"([+-]\d{4})?"
)
_SYSTEMS = {
    "MDC": MDC_SYSTEM,
    "LN": LOINC_SYSTEM,
    "LOINC": LOINC_SYSTEM,
    "SCT": SNOMED_SYSTEM,
    "SNM": SNOMED_SYSTEM,
    "SNOMED-CT": SNOMED_SYSTEM,
    "UCUM": UCUM_SYSTEM,
}


def resource_id(resource_type: str, natural_key: str) -> str:
    """Deterministic id: uuid5 (RFC 4122) over the type and the natural key.

    Same value as ``str(uuid.uuid5(ID_NAMESPACE, ...))``, computed without the ``uuid``
    object overhead since this runs several times per OBX.
    """
    digest = bytearray(hashlib.sha1(_NS_BYTES + f"{resource_type}|{natural_key}".encode()).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def timed_resource_id(resource_type: str, natural_key: str, effective: str) -> str:
    """Deterministic id that sorts by ``effective`` (a FHIR dateTime): UUID version 8 laid
    out like version 7, 48 bits of epoch milliseconds first, the rest from the same hash as
    ``resource_id``.

    Why: ids are a key of the ``(type, id)`` index; readings arrive roughly in time order,
    so time-first ids append at one end of it instead of dirtying a random leaf page per
    Observation in every commit (docs/mllp-ingest-performance.md).
    """
    digest = bytearray(hashlib.sha1(_NS_BYTES + f"{resource_type}|{natural_key}".encode()).digest())
    digest[:6] = epoch_ms(effective).to_bytes(6, "big")
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_MAX_MS = (1 << 48) - 1


@lru_cache(maxsize=4096)
def epoch_ms(effective: str) -> int:
    """Milliseconds since 1970 (UTC) of a FHIR date or dateTime from ``fhir_datetime``,
    clamped to 48 bits; a date without a time counts from its start in UTC."""
    text = effective if len(effective) >= 10 else (effective + "-01-01")[:10]
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(int(when.timestamp() * 1000), 0), _MAX_MS)


@lru_cache(maxsize=4096)  # a message's OBX share a few times; feeds repeat them
def fhir_datetime(raw: str, tz: ZoneInfo) -> str | None:
    """HL7 DTM/TS (``YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]``) as a FHIR dateTime.

    Precision is kept down to the day; a time of day gets seconds (FHIR requires them) and an
    offset, the sender's or else ``tz``'s at that local time (fold=0 in a DST overlap).
    None when the text is not a valid time.
    """
    m = _DTM.fullmatch(raw.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, offset = m.groups()
    try:
        date = datetime(int(year), int(month or 1), int(day or 1), tzinfo=tz)
        if hour is None:
            return "-".join(p for p in (year, month, day) if p)
        local = date.replace(hour=int(hour), minute=int(minute or 0), second=int(second or 0))
    except ValueError:
        return None
    stamp = local.strftime("%Y-%m-%dT%H:%M:%S") + (frac or "")
    if offset is None:
        return stamp + _offset(local.utcoffset() or timedelta(0))
    if int(offset[1:3]) > 14 or int(offset[3:]) > 59:
        return None
    return f"{stamp}{offset[:3]}:{offset[3:]}"


def _offset(delta: timedelta) -> str:
    minutes = int(delta.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def original_time_ext(raw: str) -> dict[str, Any]:
    """Primitive extension keeping the time string as sent (``_effectiveDateTime``...)."""
    return {"extension": [{"url": ORIGINAL_TIME_URL, "valueString": raw}]}


def system_uri(name: str) -> str:
    """FHIR system URI for an HL7 v2 coding system name."""
    upper = name.upper()
    if upper in _SYSTEMS:
        return _SYSTEMS[upper]
    if upper.startswith("HL7") and upper[3:].isdigit():
        return f"http://terminology.hl7.org/CodeSystem/v2-{upper[3:]}"
    return "urn:vitalgate:cs:" + quote(name, safe="")


def cwe_codings(comps: list[str], enc: Encoding) -> list[dict[str, Any]]:
    """Codings of a CWE/CE given as raw components (primary triplet, then alternate)."""
    codings = []
    for base in (0, 3):
        code, text, system = (unescape(c, enc) for c in (comps[base : base + 3] + ["", "", ""])[:3])
        if not code and not system:
            continue
        coding: dict[str, Any] = {}
        if system:
            coding["system"] = system_uri(system)
        if code and code != NULL:
            coding["code"] = code
        if text and text != NULL:
            coding["display"] = text
        if coding:
            codings.append(coding)
    return codings


def cwe_concept(comps: list[str], enc: Encoding) -> dict[str, Any] | None:
    """CodeableConcept from a CWE/CE (CWE.9 original text, else the first text, as ``text``)."""
    concept: dict[str, Any] = {}
    codings = cwe_codings(comps, enc)
    if codings:
        concept["coding"] = codings
    text = unescape(comps[8], enc) if len(comps) > 8 else ""
    if not text and not codings and len(comps) > 1:
        text = unescape(comps[1], enc)
    if text:
        concept["text"] = text
    return concept or None


def present(value: str) -> str:
    """``value`` with the HL7 null ``""`` turned into empty."""
    return "" if value == NULL else value
