"""OBX-6 units to (display text, UCUM code) and OBX-7 to FHIR referenceRange.

A unit is resolved from either CWE triplet (primary, then alternate): ``ctx.unit_aliases``
first, then ``terminology.to_ucum``. No unit is assumed when OBX-6 is empty; an unknown unit
keeps its text without a UCUM code (the Observation then is not flagged as a vital sign).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from ..terminology import to_ucum
from .context import MappingContext
from .escape import unescape
from .tokenizer import Segment
from .values import quantity

_RANGE = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\s*")
_BOUND = re.compile(r"\s*([<>])=?\s*(-?\d+(?:\.\d+)?)\s*")


def obx_unit(obx: Segment, ctx: MappingContext) -> tuple[str, str | None]:
    """(unit text for Quantity.unit, UCUM code or None)."""
    comps = [unescape(c, obx.enc) for c in obx.components(6)] + [""] * 6
    if not any(comps[:6]):
        return "", None
    ucum = None
    for base in (0, 3):
        code, text, system = comps[base : base + 3]
        if not code and not text:
            continue
        ucum = ctx.unit_aliases.get((system.upper(), code)) or to_ucum(code, system, text)
        if ucum:
            break
    primary_is_label = comps[2].upper() not in ("MDC", "")
    text = (comps[1] or comps[0]) if primary_is_label else (ucum or comps[1] or comps[0])
    return text, ucum


def reference_range(obx: Segment, unit: tuple[str, str | None]) -> list[dict[str, Any]]:
    """OBX-7 ``low-high``, ``<high`` or ``>low``; anything else is kept as text."""
    raw = unescape(obx.get(7), obx.enc)
    if not raw:
        return []
    m = _RANGE.fullmatch(raw)
    if m:
        return [{"low": quantity(Decimal(m[1]), *unit), "high": quantity(Decimal(m[2]), *unit)}]
    m = _BOUND.fullmatch(raw)
    if m:
        side = "high" if m[1] == "<" else "low"
        return [{side: quantity(Decimal(m[2]), *unit)}]
    return [{"text": raw}]
