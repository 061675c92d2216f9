"""What an OBX maps to apart from its value, its time and its place in the message.

A monitor sends the same series every few seconds: the same OBX-2/3/6/11/13/17 under the
same sender and trigger event. Their codings, category, unit, status, label and the alarm-limit
rule are therefore resolved once per distinct OBX shape (``series_of``, memoised in the
context) instead of once per OBX, which re-split and re-read the same fields ~100 times a
10-OBX message. Nothing here may depend on OBX-5, OBX-14, OBX-4 or the message's other
segments: those vary per reading and are read by the mapper itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..terminology import MDC_SYSTEM, MdcTerm, mdc_term
from .context import MappingContext
from .escape import unescape
from .fields import cwe_codings
from .oru_units import obx_unit
from .tokenizer import Segment

STATUS = {"F": "final", "C": "corrected", "A": "amended", "P": "preliminary",
          "R": "preliminary", "S": "preliminary", "I": "registered", "U": "final",
          "D": "entered-in-error", "W": "entered-in-error", "X": "cancelled"}
_MEMO_LIMIT = 8192


@dataclass(frozen=True, slots=True)
class Series:
    """The per-series part of an OBX's Observation; ``codings`` are copied per resource."""

    term: MdcTerm | None
    codings: tuple[dict[str, Any], ...]
    code_key: str  # the natural key's code part (``mdc:<code>``, ...)
    category: str | None  # device-alert | device-setting | None
    unit: tuple[str, str | None]  # (Quantity.unit text, UCUM code or None)
    status_code: str  # OBX-11.1, upper case
    status: str | None  # None: an unknown OBX-11 (the caller raises, with the OBX's place)
    label: str  # code.text
    value_type: str  # OBX-2.1, upper case
    alarm_limits: bool  # OBX-7 holds alarm limits, not a reference range

    def copied_codings(self) -> list[dict[str, Any]]:
        """No two resources share a coding dict (a reader may change one of them)."""
        return [dict(c) for c in self.codings]


def series_of(obx: Segment, ctx: MappingContext, trigger_event: str, sender_app: str) -> Series:
    """``obx``'s series part, memoised in ``ctx.memo`` by every field and setting it reads."""
    f, enc = obx.fields, obx.enc
    n = len(f)
    # OBX-2, 3, 6, 11, 13 and 17 (raw), every delimiter (an escaped \F\ or \P\ decodes to the
    # message's own) and the per-message settings
    key = ("obx", f[2] if n > 2 else "", f[3] if n > 3 else "", f[6] if n > 6 else "",
           f[11] if n > 11 else "", f[13] if n > 13 else "", f[17] if n > 17 else "", enc.field,
           enc.component, enc.subcomponent, enc.escape, enc.repetition, enc.truncation, trigger_event,
           sender_app)
    found: Series | None = ctx.memo.get(key)
    if found is None:
        found = _series(obx, ctx, trigger_event, sender_app)
        if len(ctx.memo) >= _MEMO_LIMIT:
            ctx.memo.clear()
        ctx.memo[key] = found
    return found


def _series(obx: Segment, ctx: MappingContext, trigger_event: str, sender_app: str) -> Series:
    term, codings, code_key = _code(obx, ctx)
    status_code = obx.get(11, 1).upper()
    override = ctx.status_maps.get(sender_app, {})
    status = override.get(status_code) or STATUS.get(status_code) or ("unknown" if not status_code else None)
    return Series(term, tuple(codings), code_key, _category(obx, trigger_event), obx_unit(obx, ctx),
                  status_code, status, unescape(obx.get(3, 2), obx.enc), obx.get(2, 1).upper(),
                  obx.get(3, 3).upper() == "MDIL" or sender_app in ctx.alarm_limit_sources)


def _category(obx: Segment, trigger_event: str) -> str | None:
    if trigger_event == "R40" or obx.get(3, 3).upper().endswith("-ALERT"):
        return "device-alert"
    # The reference puts SETTING in OBX-17; the PIIC demo export sends it in OBX-13.
    for n in (13, 17):
        raw = obx[n].upper()
        if raw and ("SETTING" in raw or "CONFIGURATION" in raw):
            parts = set(raw.split(obx.enc.component))
            if parts & {"SETTING", "CONFIGURATION"}:
                return "device-setting"
    return None


def _code(obx: Segment, ctx: MappingContext) -> tuple[MdcTerm | None, list[dict[str, Any]], str]:
    """(MDC term, codings in order LOINC, extra LOINC, MDC, vendor; natural code key)."""
    comps = obx.components(3) + [""] * 6
    mdc = ""
    for base in (0, 3):
        code, system = unescape(comps[base], obx.enc), comps[base + 2].upper()
        if system == "MDC" and code:
            mdc = code
            break
        alias = ctx.code_aliases.get((system, code)) if code else None
        if alias:
            mdc = alias
            break
    term = mdc_term(mdc) if mdc and mdc != "0" else None
    vendor = [c for c in cwe_codings(comps, obx.enc) if c.get("system") != MDC_SYSTEM]
    codings: list[dict[str, Any]] = []
    if term is not None and term.loinc and term.vital:
        codings.append({"system": "http://loinc.org", "code": term.loinc,
                        "display": term.loinc_display})
        codings += [{"system": "http://loinc.org", "code": c} for c in term.extra_loinc]
    refid = term.refid if term else unescape(comps[1] if comps[2].upper() == "MDC" else "")
    if mdc:
        mdc_coding: dict[str, Any] = {"system": MDC_SYSTEM}
        if mdc != "0":
            mdc_coding["code"] = mdc
        if refid:
            mdc_coding["display"] = refid
        codings.append(mdc_coding)
    codings += vendor
    if mdc and mdc != "0":
        return term, codings, f"mdc:{mdc}"
    if refid:
        return term, codings, f"mdc-refid:{refid}"
    return term, codings, f"{comps[2]}:{unescape(comps[0], obx.enc)}"
