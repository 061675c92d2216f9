"""Typed search values: one parsed, normalised value of one parameter (https://hl7.org/fhir/R4B/search.html).

Each parser takes the text of one comma-separated alternative (already unescaped where the
type needs it) and returns a frozen value the SQL compiler maps onto one index table; a bad
value raises ``ValueError`` with a message the query parser turns into a 400.

Prefixes (``eq ne gt lt ge le sa eb ap``) apply to number, date and quantity. ``ap`` is
accepted and means "within 10%": of the value for numbers and quantities, and, for dates, of
the distance between the value and now, added on both sides of the value's range.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from .dates import date_range
from .normalize import norm_text, parse_reference
from .ucum import UCUM_SYSTEM, canonical, canonical_unit

__all__ = [
    "PREFIXES",
    "DateValue",
    "NumberValue",
    "QuantityValue",
    "ReferenceValue",
    "StringValue",
    "TextValue",
    "TokenValue",
    "Value",
    "parse_date",
    "parse_number",
    "parse_quantity",
    "parse_reference_value",
    "parse_string",
    "parse_token",
    "split_escaped",
    "unescape",
]

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass(frozen=True, slots=True)
class TokenValue:
    """``[system]|[code]``: ``system`` None means any system unless ``no_system`` (``|code``)."""

    system: str | None
    code: str | None
    no_system: bool = False


@dataclass(frozen=True, slots=True)
class TextValue:
    """``:text`` on a token: matches the normalised text or display (substring)."""

    text: str


@dataclass(frozen=True, slots=True)
class StringValue:
    """``mode``: ``start`` (default), ``contains`` (both normalised) or ``exact`` (as written)."""

    text: str
    mode: str = "start"


@dataclass(frozen=True, slots=True)
class DateValue:
    """A prefix and the inclusive µs range of the value's precision."""

    prefix: str
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class NumberValue:
    """``lo``..``hi`` is the implicit range (eq, ne: ``[lo, hi)``; ap: ``[lo, hi]``)."""

    prefix: str
    value: float
    lo: float
    hi: float


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """A number plus a unit; ``canon`` True: the number and ``code`` are UCUM-canonical."""

    number: NumberValue
    system: str | None
    code: str | None
    canon: bool


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """A reference value: type and/or id, or an absolute/canonical url."""

    target_type: str | None
    target_id: str | None
    url: str | None


Value = TokenValue | TextValue | StringValue | DateValue | NumberValue | QuantityValue | ReferenceValue


def split_escaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` not escaped with a backslash; escapes are kept for ``unescape``."""
    parts: list[str] = []
    cur: list[str] = []
    it = iter(text)
    for c in it:
        if c == "\\":
            cur.append(c)
            cur.append(next(it, ""))
        elif c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    it = iter(text)
    for c in it:
        out.append(next(it, "") if c == "\\" else c)
    return "".join(out)


def _prefix(text: str) -> tuple[str, str]:
    if len(text) > 2 and text[:2].isalpha():
        if text[:2] not in PREFIXES:
            raise ValueError(f"unknown prefix {text[:2]!r} (allowed: {', '.join(PREFIXES)})")
        return text[:2], text[2:]
    return "eq", text


def parse_token(text: str) -> TokenValue:
    parts = split_escaped(text, "|")
    if len(parts) == 1:
        return TokenValue(None, unescape(parts[0]) or None)
    if len(parts) != 2:
        raise ValueError(f"a token is [system]|[code], got {text!r}")
    system, code = unescape(parts[0]), unescape(parts[1])
    if not system and not code:
        raise ValueError("a token needs a system or a code")
    return TokenValue(system or None, code or None, no_system=not system)


def parse_string(text: str, modifier: str | None) -> StringValue:
    raw = unescape(text)
    if modifier == "exact":
        return StringValue(raw, "exact")
    return StringValue(norm_text(raw), "contains" if modifier == "contains" else "start")


def parse_date(text: str) -> DateValue:
    prefix, rest = _prefix(text)
    # An unencoded "+02:00" in a query string arrives as " 02:00": take it as meant.
    lo, hi = date_range(rest.replace(" ", "+"))
    if prefix == "ap":
        now = int(time.time() * 1_000_000)
        slack = abs(now - lo) // 10
        lo, hi = lo - slack, hi + slack
    return DateValue(prefix, lo, hi)


def _number(prefix: str, text: str) -> NumberValue:
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    v = float(d)
    if not math.isfinite(v):
        raise ValueError(f"number out of range: {text!r}")
    if prefix == "ap":
        slack = abs(v) * 0.1
        return NumberValue(prefix, v, v - slack, v + slack)
    exp = d.as_tuple().exponent
    try:  # the implicit range of the stated precision: 0e400 is a finite value with an unbounded range
        half = 0.5 * 10.0 ** (exp if isinstance(exp, int) else 0)
    except OverflowError:
        raise ValueError(f"number out of range: {text!r}") from None
    return NumberValue(prefix, v, v - half, v + half)


def parse_number(text: str) -> NumberValue:
    prefix, rest = _prefix(text)
    return _number(prefix, rest)


def parse_quantity(text: str) -> QuantityValue:
    parts = [unescape(p) for p in split_escaped(text, "|")]
    if len(parts) not in (1, 3):
        raise ValueError(f"a quantity is [prefix]number[|system|code], got {text!r}")
    prefix, rest = _prefix(parts[0])
    n = _number(prefix, rest)
    if len(parts) == 1 or (not parts[1] and not parts[2]):
        return QuantityValue(n, None, None, False)
    system, code = parts[1] or None, parts[2] or None
    if code is not None and system in (None, UCUM_SYSTEM) and canonical_unit(code) is not None:
        unit, lo = canonical(code, n.lo)
        hi = canonical(code, n.hi)[1]
        value = canonical(code, n.value)[1]
        return QuantityValue(NumberValue(prefix, value, lo, hi), None, unit, True)
    return QuantityValue(n, system, code, False)


def parse_reference_value(text: str, target_type: str | None) -> ReferenceValue:
    ref = unescape(text)
    if not ref:
        raise ValueError("empty reference")
    ttype, tid, url = parse_reference(ref)
    if url is not None:
        return ReferenceValue(None, None, url)
    if ttype is None:
        if "/" in ref:
            raise ValueError(f"not a reference: {ref!r} (use Type/id, id or an absolute URL)")
        return ReferenceValue(target_type, ref, None)
    if target_type is not None and ttype != target_type:
        raise ValueError(f"reference {ref!r} does not match the modifier :{target_type}")
    return ReferenceValue(ttype, tid, None)
