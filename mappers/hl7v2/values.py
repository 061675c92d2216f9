"""OBX-5 value by OBX-2 type to an Observation ``value[x]`` (or ``dataAbsentReason``).

NM -> valueQuantity with ``decimal.Decimal`` (precision as sent: ``5.00`` stays ``5.00``);
SN -> valueQuantity (with comparator), valueRange (``-``) or valueRatio (``:`` or ``/``);
ST/TX/FT/ID/IS -> valueString (repetitions joined by newlines); CWE/CE/CNE/CF ->
valueCodeableConcept; DTM/TS/DT -> valueDateTime; NA (numeric array) -> valueSampledData
with origin 0, factor 1 and ``period`` 0 until a sampling-rate child OBX sets it (``waveforms``;
checked and joined in bulk, empty elements become ``E``). Other types raise HL7Error 102 at OBX-2.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from ..terminology import UCUM_SYSTEM
from .errors import DATA_TYPE_ERROR, HL7Error
from .escape import unescape
from .fields import cwe_concept, fhir_datetime
from .tokenizer import Segment
from .waveforms import bulk_samples

DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_TEXT = frozenset({"ST", "TX", "FT", "ID", "IS", ""})
_CODED = frozenset({"CWE", "CE", "CNE", "CF"})
_TIME = frozenset({"DTM", "TS", "DT"})
_COMPARATORS = frozenset({"<", "<=", ">", ">="})


def data_absent(code: str) -> dict[str, Any]:
    return {"coding": [{"system": DATA_ABSENT, "code": code}]}


def quantity(number: Decimal, unit_text: str, ucum: str | None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": number}
    if unit_text or ucum:
        q["unit"] = unit_text or ucum
    if ucum:
        q["system"] = UCUM_SYSTEM
        q["code"] = ucum
    return q


# HL7 NM: an optional sign, digits and an optional decimal point; no exponent (Python's Decimal
# would also take "1e999", "inf" or "1_000", none of which a device means)
_NM = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


def decimal(text: str, where: str) -> Decimal:
    """The decimal an HL7 NM text states, else HL7Error 102."""
    stripped = text.strip()
    if _NM.fullmatch(stripped) is None:
        raise HL7Error(DATA_TYPE_ERROR, f"not a number: {text[:40]!r}", where)
    return Decimal(stripped)


def obx_value(obx: Segment, seq: int, unit: tuple[str, str | None],
              tz: ZoneInfo) -> tuple[str, Any]:
    """(``value[x]`` element name, value) for a non-empty OBX-5."""
    kind = obx.get(2, 1).upper()
    where = f"OBX^{seq}^5"
    raw = obx.get(5)
    if kind == "NM":
        return "valueQuantity", quantity(decimal(raw, where), *unit)
    if kind == "SN":
        return _structured(obx.components(5), unit, where)
    if kind in _TEXT:
        return "valueString", "\n".join(unescape(r, obx.enc) for r in obx.repetitions(5))
    if kind in _CODED:
        concept = cwe_concept(obx.components(5), obx.enc)
        if concept is None:
            raise HL7Error(DATA_TYPE_ERROR, "empty coded value", where)
        return "valueCodeableConcept", concept
    if kind in _TIME:
        when = fhir_datetime(raw, tz)
        if when is None:
            raise HL7Error(DATA_TYPE_ERROR, f"not a date/time: {raw[:40]!r}", where)
        return "valueDateTime", when
    if kind == "NA":
        return "valueSampledData", _sampled(bulk_samples(raw, obx.enc.component, where), unit)
    raise HL7Error(DATA_TYPE_ERROR, f"unsupported value type {kind[:10]!r}", f"OBX^{seq}^2")


def _structured(comps: list[str], unit: tuple[str, str | None], where: str) -> tuple[str, Any]:
    comparator, num1, sep, num2 = (comps + ["", "", "", ""])[:4]
    if sep in ("-", ":", "/") and num2:
        low, high = decimal(num1, where), decimal(num2, where)
        if sep == "-":
            return "valueRange", {"low": quantity(low, *unit), "high": quantity(high, *unit)}
        return "valueRatio", {"numerator": {"value": low}, "denominator": {"value": high}}
    if sep or num2:
        raise HL7Error(DATA_TYPE_ERROR, f"unsupported SN separator {sep[:5]!r}", where)
    q = quantity(decimal(num1, where), *unit)
    comparator = unescape(comparator)
    if comparator in ("=", ""):
        return "valueQuantity", q
    if comparator == "<>" or comparator not in _COMPARATORS:
        raise HL7Error(DATA_TYPE_ERROR, f"unsupported SN comparator {comparator[:5]!r}", where)
    q["comparator"] = comparator
    return "valueQuantity", q


def _sampled(data: str, unit: tuple[str, str | None]) -> dict[str, Any]:
    origin = quantity(Decimal(0), *unit)
    return {"origin": origin, "period": Decimal(0), "dimensions": 1, "data": data}
