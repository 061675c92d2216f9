"""Decode Puritan Bennett 840/980 ``MISCF`` / ``MISCA`` responses into a typed record.

Wire format (manual numbering: ``MISCF`` = field 1, byte count = 2, field count = 3,
STX = 4, first data field = 5)::

    MISCF,1225,169 ,<STX>f5,f6,...,f173,<ETX><CR>

The byte count is the number of bytes between STX and ETX, the field count the number of
data fields, each *followed* by a comma. Fields are fixed width and space padded. Pure:
bytes and a profile in, a :class:`DecodedVentRecord` out, or :class:`VentDecodeError` with
the reason. The ventilator clock has no seconds or zone, so the record is stamped with the
receipt time given by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation

from mappers.profile_schema import CodeEntry, Profile, RecordLayout

STX = 0x02
ETX = 0x03
CR = 0x0D
MAX_RESPONSE_BYTES = 65_536
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_HEADER = re.compile(rb"^(MISC[A-Z]),\s*(\d{1,6})\s*,\s*(\d{1,4})\s*,$")

_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")

Getter = Callable[[int], str]


class VentDecodeError(ValueError):
    """A ventilator response could not be decoded; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class VentValue:
    """One mapped field: trimmed text plus the converted value (UCUM units)."""

    key: str
    field: int
    raw: str
    value: Decimal | str | None
    unit: str | None
    valid: bool
    entry: CodeEntry


@dataclass(frozen=True, slots=True)
class AlarmStatus:
    key: str
    field: int
    label: str
    state: str
    active: bool


@dataclass(frozen=True, slots=True)
class VentMode:
    parts: tuple[str, ...]
    composed: str
    name: str


@dataclass(frozen=True, slots=True)
class DecodedVentRecord:
    record_type: str
    profile_id: str
    model: str
    serial: str
    device_id: str
    received_at: datetime
    vent_time: str | None
    vent_date: str | None
    mode: VentMode
    values: tuple[VentValue, ...]
    alarms: tuple[AlarmStatus, ...]
    fields: tuple[str, ...]
    first_field: int

    def field(self, number: int) -> str:
        """Trimmed text of a field by its manual number (first data field = 5)."""
        return self.fields[number - self.first_field]

    def value(self, key: str) -> VentValue | None:
        return next((v for v in self.values if v.key == key), None)

    @property
    def active_alarms(self) -> tuple[AlarmStatus, ...]:
        return tuple(a for a in self.alarms if a.active)


def decode_miscf(
    data: bytes, profile: Profile, *, received_at: datetime, device_id: str | None = None
) -> DecodedVentRecord:
    """Decode a ``MISCF`` (SNDF) response."""
    return decode_response(data, profile, received_at=received_at, device_id=device_id,
                           expect="MISCF")


def decode_misca(
    data: bytes, profile: Profile, *, received_at: datetime, device_id: str | None = None
) -> DecodedVentRecord:
    """Decode a ``MISCA`` (SNDA) response."""
    return decode_response(data, profile, received_at=received_at, device_id=device_id,
                           expect="MISCA")


def decode_response(
    data: bytes,
    profile: Profile,
    *,
    received_at: datetime,
    device_id: str | None = None,
    expect: str | None = None,
) -> DecodedVentRecord:
    """Decode any record type the profile declares (``expect`` pins one)."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    name, fields = split_frame(data, profile, expect)
    layout = profile.record(name)
    get = _getter(fields, layout)
    model, serial = _vent_id(get(layout.vent_id_field), profile)
    return DecodedVentRecord(
        record_type=name,
        profile_id=profile.id,
        model=model,
        serial=serial,
        device_id=device_id or f"{profile.vendor}-{model}-{serial}".lower(),
        received_at=received_at,
        vent_time=get(layout.vent_time_field) or None,
        vent_date=get(layout.vent_date_field) or None,
        mode=_mode(profile, [get(n) for n in layout.mode_fields]),
        values=tuple(_values(profile, layout, get)),
        alarms=tuple(_alarms(profile, layout, get)),
        fields=tuple(fields),
        first_field=layout.first_field,
    )


def split_frame(data: bytes, profile: Profile, expect: str | None = None) -> tuple[str, list[str]]:
    """Check framing and counts; return the record name and the trimmed fields."""
    if len(data) > MAX_RESPONSE_BYTES:
        raise VentDecodeError(f"response of {len(data)} bytes exceeds {MAX_RESPONSE_BYTES}")
    stx = data.find(bytes([STX]))
    if stx < 0:
        raise VentDecodeError("no STX (0x02) after the header")
    name, byte_count, field_count = _header(data[:stx], profile, expect)
    etx = data.find(bytes([ETX]), stx + 1)
    if etx < 0:
        raise VentDecodeError("truncated: no ETX (0x03) after the fields")
    if data[etx + 1 :] != bytes([CR]):
        raise VentDecodeError("frame must end with ETX CR and nothing after it")
    body = data[stx + 1 : etx]
    if len(body) != byte_count:
        raise VentDecodeError(f"{name} byte count mismatch: header says {byte_count}, "
                              f"{len(body)} bytes between STX and ETX")
    bad = _NOT_PRINTABLE.search(body)
    if bad is not None:
        raise VentDecodeError(f"invalid byte 0x{body[bad.start()]:02x} at offset "
                              f"{bad.start()} of the fields")
    parts = body.decode("ascii").split(",")
    if parts[-1] != "":
        raise VentDecodeError("last field is not followed by a comma")
    fields = [p.strip() for p in parts[:-1]]
    if len(fields) != field_count:
        raise VentDecodeError(f"{name} field count mismatch: header says {field_count}, "
                              f"found {len(fields)}")
    allowed = profile.record(name).field_counts
    if field_count not in allowed:
        raise VentDecodeError(f"{name} has {field_count} fields; profile {profile.id} "
                              f"expects {allowed}")
    return name, fields


def _header(raw: bytes, profile: Profile, expect: str | None) -> tuple[str, int, int]:
    m = _HEADER.match(raw)
    if m is None:
        raise VentDecodeError(f"malformed header {raw[:40]!r}")
    name = m.group(1).decode("ascii")
    if expect is not None and name != expect:
        raise VentDecodeError(f"expected a {expect} record, got {name}")
    if name not in {r.name for r in profile.records}:
        raise VentDecodeError(f"record type {name} is not in profile {profile.id}")
    return name, int(m.group(2)), int(m.group(3))


def _getter(fields: list[str], layout: RecordLayout) -> Getter:
    def get(number: int) -> str:
        index = number - layout.first_field
        if not 0 <= index < len(fields):
            raise VentDecodeError(f"{layout.name} has no field {number}")
        return fields[index]

    return get


def _vent_id(text: str, profile: Profile) -> tuple[str, str]:
    parts = text.split()
    if len(parts) != 2:
        raise VentDecodeError(f"vent ID {text!r} is not '<model> <serial>'")
    model, serial = parts
    if model not in profile.models:
        raise VentDecodeError(f"vent ID says model {model}; profile {profile.id} "
                              f"covers {profile.models}")
    if not serial.isalnum():
        raise VentDecodeError(f"vent serial {serial!r} is not alphanumeric")
    return model, serial


def _mode(profile: Profile, parts: list[str]) -> VentMode:
    composed = " ".join(p for p in parts if p)
    for entry in profile.modes:
        want = entry.parts + [""] * (len(parts) - len(entry.parts))
        if want == parts:
            return VentMode(tuple(parts), composed, entry.name)
    return VentMode(tuple(parts), composed, composed)


def _values(profile: Profile, layout: RecordLayout, get: Getter) -> list[VentValue]:
    out: list[VentValue] = []
    for entry in profile.codes_for_record(layout.name):
        if entry.value_type == "alarm" or entry.field is None:
            continue
        raw = get(entry.field)
        out.append(_convert(profile, entry, raw))
    return out


def _convert(profile: Profile, entry: CodeEntry, raw: str) -> VentValue:
    assert entry.field is not None
    if entry.value_type == "string":
        if raw and entry.allowed is not None and raw not in entry.allowed:
            raise VentDecodeError(f"field {entry.field} ({entry.label}): unknown value {raw!r}")
        return VentValue(entry.key, entry.field, raw, raw or None, None, True, entry)
    unit = profile.unit(entry.unit) if entry.unit else None
    if raw in ("", "OFF") or unit is None:
        ucum = unit.ucum if unit else None
        return VentValue(entry.key, entry.field, raw, None, ucum, True, entry)
    if not _NUMBER.match(raw):
        raise VentDecodeError(f"field {entry.field} ({entry.label}): not a number: {raw!r}")
    try:
        value = _plain(Decimal(raw) * Decimal(repr(unit.factor)))
    except InvalidOperation:
        raise VentDecodeError(f"field {entry.field} ({entry.label}): bad number {raw!r}") from None
    return VentValue(entry.key, entry.field, raw, value, unit.ucum, _in_range(entry, value), entry)


def _plain(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent form (``4E+1`` -> ``40``)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def _in_range(entry: CodeEntry, value: Decimal) -> bool:
    if entry.valid_min is not None and value < Decimal(repr(entry.valid_min)):
        return False
    return not (entry.valid_max is not None and value > Decimal(repr(entry.valid_max)))


def _alarms(profile: Profile, layout: RecordLayout, get: Getter) -> list[AlarmStatus]:
    out: list[AlarmStatus] = []
    for entry in profile.codes_for_record(layout.name):
        if entry.value_type != "alarm" or entry.field is None:
            continue
        state = get(entry.field)
        if not state:
            continue  # blank: this software or configuration does not report it
        if state not in layout.alarm_values:
            raise VentDecodeError(f"field {entry.field} ({entry.label}): unknown alarm "
                                  f"state {state!r}")
        active = state not in layout.normal_alarm_values
        out.append(AlarmStatus(entry.key, entry.field, entry.label, state, active))
    return out


def vent_clock(record: DecodedVentRecord, tz: tzinfo) -> datetime | None:
    """The ventilator's own clock (``HH:MM`` + ``MMM DD YYYY``) read in ``tz``; None if absent or
    unreadable. Minute resolution: compare it with a limit well above 60 s."""
    if not record.vent_time or not record.vent_date:
        return None
    try:
        naive = datetime.strptime(  # noqa: DTZ007 - the device clock has no zone; tz is applied below
            f"{record.vent_date.title()} {record.vent_time}", "%b %d %Y %H:%M")
    except ValueError:
        return None
    return naive.replace(tzinfo=tz)
