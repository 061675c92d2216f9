"""Decode IntelliVue Data Export datagrams (monitor -> client) into typed values.

``decode_message(datagram)`` returns one of: :class:`AssociationResult` (AC or RF SPDU),
:class:`SessionEnd` (release request/response, abort), :class:`ConnectIndication`,
:class:`MdsCreateEvent`, :class:`PollResult` (numerics and waves of an extended or single
poll, one part of a linked reply), :class:`KeepAliveResult` (the MDS Get reply) or
:class:`RemoteError`. Anything else raises :class:`IntellivueDecodeError` with a reason.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime

from . import nomenclature as n
from .binary import IntellivueDecodeError, Reader, decode_abs_time, decode_float, u16_samples

__all__ = [
    "AssociationResult",
    "ConnectIndication",
    "KeepAliveResult",
    "MdsCreateEvent",
    "NumericValue",
    "PollResult",
    "RemoteError",
    "SessionEnd",
    "UserInfo",
    "WaveValue",
    "decode_message",
]


@dataclass(frozen=True, slots=True)
class UserInfo:
    """MDSEUserInfoStd of an association request or response."""

    protocol_version: int
    nomenclature_version: int
    system_type: int
    startup_mode: int
    min_poll_period_ms: float | None = None


@dataclass(frozen=True, slots=True)
class AssociationResult:
    accepted: bool
    user_info: UserInfo | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SessionEnd:
    kind: str  # release-request | release-response | abort


@dataclass(frozen=True, slots=True)
class ConnectIndication:
    system_id: str
    ip_address: str | None
    association_port: int | None


@dataclass(frozen=True, slots=True)
class MdsCreateEvent:
    invoke_id: int
    managed_object: bytes
    system_id: str | None
    manufacturer: str | None
    model: str | None
    bed_label: str | None
    device_time: datetime | None


@functools.lru_cache(maxsize=1024)
def _state_names(state: int) -> tuple[str, ...]:
    return tuple(name for bit, name in n.STATE_NAMES.items() if state & bit)


@dataclass(frozen=True, slots=True)
class NumericValue:
    handle: int
    physio_id: int
    state: int
    unit_code: int
    value: float | None
    special: str | None = None  # NaN, NRes, +INF, -INF when value is None

    @property
    def valid(self) -> bool:
        return self.value is not None and not self.state & n.INVALID_MASK

    @property
    def state_names(self) -> list[str]:
        return list(_state_names(self.state)) if self.state else []


@dataclass(frozen=True, slots=True)
class WaveValue:
    handle: int
    physio_id: int
    state: int
    samples: list[int]
    period_ms: float | None = None
    unit_code: int | None = None
    scale: tuple[float, float, int, int] | None = None  # low abs, high abs, low scaled, high scaled

    @property
    def valid(self) -> bool:
        return bool(self.samples) and not self.state & n.INVALID_MASK

    def origin_factor(self) -> tuple[float, float]:
        """(origin, factor) with physical = origin + factor x sample (FHIR SampledData)."""
        if self.scale is None:
            return 0.0, 1.0
        lo_abs, hi_abs, lo_s, hi_s = self.scale
        if hi_s == lo_s:
            return 0.0, 1.0
        k = (hi_abs - lo_abs) / (hi_s - lo_s)
        return round(lo_abs - lo_s * k, 6), round(k, 9)

    def physical(self) -> list[float] | list[int]:
        """Samples in physical units through the scale spec, in one pass."""
        if self.scale is None:
            return self.samples
        lo_abs, hi_abs, lo_s, hi_s = self.scale
        if hi_s == lo_s:
            return self.samples
        k = (hi_abs - lo_abs) / (hi_s - lo_s)
        return [lo_abs + (s - lo_s) * k for s in self.samples]


@dataclass(frozen=True, slots=True)
class PollResult:
    invoke_id: int
    poll_number: int
    object_type: int
    relative_time: int
    device_time: datetime | None
    numerics: list[NumericValue] = field(default_factory=list)
    waves: list[WaveValue] = field(default_factory=list)
    linked: int | None = None  # RORLS_FIRST / _NOT_FIRST_NOT_LAST / _LAST for a linked part

    @property
    def last_part(self) -> bool:
        return self.linked in (None, n.RORLS_LAST)


@dataclass(frozen=True, slots=True)
class KeepAliveResult:
    invoke_id: int
    device_time: datetime | None


@dataclass(frozen=True, slots=True)
class RemoteError:
    invoke_id: int
    error_value: int


Message = (AssociationResult | SessionEnd | ConnectIndication | MdsCreateEvent | PollResult
           | KeepAliveResult | RemoteError)


def decode_message(datagram: bytes) -> Message:
    if len(datagram) < 2:
        raise IntellivueDecodeError(f"datagram of {len(datagram)} bytes")
    if datagram[0] == 0xE1 and datagram[1] == 0x00:
        return _data_export(Reader(datagram))
    return _session(datagram)


# -- association control (session layer) ------------------------------------------------


def _session(data: bytes) -> AssociationResult | SessionEnd:
    r = Reader(data)
    spdu = r.u8("SPDU type")
    length = r.u8("SPDU length")
    if length == 0xFF:
        length = r.u16("SPDU extended length")
    if length > r.remaining:
        raise IntellivueDecodeError(f"SPDU claims {length} bytes, {r.remaining} present")
    if spdu == n.AC_SPDU:
        return AssociationResult(True, _user_info(data))
    if spdu == n.RF_SPDU:
        return AssociationResult(False, None, "association refused by the monitor")
    if spdu == n.FN_SPDU:
        return SessionEnd("release-request")
    if spdu == n.DN_SPDU:
        return SessionEnd("release-response")
    if spdu == n.AB_SPDU:
        return SessionEnd("abort")
    raise IntellivueDecodeError(f"unknown SPDU type {spdu:#04x}")


def _ber_length(r: Reader) -> int:
    first = r.u8("BER length")
    if first < 0x80:
        return first
    if first == 0x80:
        raise IntellivueDecodeError("indefinite BER length where a definite one is needed")
    size = first & 0x7F
    if size > 2:
        raise IntellivueDecodeError("BER length too long")
    return int.from_bytes(r.take(size, "BER length"), "big")


def _user_info(data: bytes) -> UserInfo:
    """MDSEUserInfoStd inside the ACSE user-information EXTERNAL (``BE 80 28 80``)."""
    at = data.rfind(n.USER_INFO_EXTERNAL)
    if at < 0:
        raise IntellivueDecodeError("association response without user information")
    r = Reader(data, at + len(n.USER_INFO_EXTERNAL))
    while True:
        tag = r.u8("EXTERNAL element tag")
        if tag in (0x06, 0x02):  # direct-reference OID, indirect-reference integer: skip
            r.take(_ber_length(r), "EXTERNAL reference")
            continue
        if tag != 0x81:
            raise IntellivueDecodeError(f"unexpected EXTERNAL element tag {tag:#04x}")
        body = r.sub(_ber_length(r), "user information")
        break
    info = UserInfo(body.u32("protocol version"), body.u32("nomenclature version"),
                    (body.u32("functional units"), body.u32("system type"))[1],
                    body.u32("startup mode"))
    body.attribute_list("option list")
    period = None
    for attr, value in body.attribute_list("supported profiles"):
        if attr == n.NOM_POLL_PROFILE_SUPPORT:
            value.u32("poll profile revision")
            period = value.u32("min poll period") / 8.0  # RelativeTime: 1/8 ms
    return UserInfo(info.protocol_version, info.nomenclature_version, info.system_type,
                    info.startup_mode, period)


# -- data export ---------------------------------------------------------------------------


def _data_export(r: Reader) -> Message:
    r.u16("session id")
    r.u16("presentation context id")
    ro_type = r.u16("remote operation type")
    body = r.sub(r.u16("remote operation length"), "remote operation")
    if ro_type == n.ROIV_APDU:
        return _invoke(body)
    if ro_type in (n.RORS_APDU, n.ROLRS_APDU):
        linked = None
        if ro_type == n.ROLRS_APDU:
            linked = body.u8("linked state")
            body.u8("linked count")
        return _result(body, linked)
    if ro_type == n.ROER_APDU:
        return RemoteError(body.u16("invoke id"), body.u16("error value"))
    raise IntellivueDecodeError(f"unknown remote operation type {ro_type}")


def _invoke(r: Reader) -> ConnectIndication | MdsCreateEvent:
    invoke_id = r.u16("invoke id")
    command = r.u16("command type")
    arg = r.sub(r.u16("argument length"), "argument")
    if command not in (n.CMD_EVENT_REPORT, n.CMD_CONFIRMED_EVENT_REPORT):
        raise IntellivueDecodeError(f"unexpected command {command} from the monitor")
    arg.take(6, "managed object")
    arg.u32("event time")
    event = arg.u16("event type")
    info = arg.sub(arg.u16("event info length"), "event info")
    if event == n.NOM_NOTI_CONN_INDIC:
        return _connect_indication(info)
    if event == n.NOM_NOTI_MDS_CREAT:
        managed = info.take(6, "MDS managed object")
        attrs = dict(info.attribute_list("MDS attributes"))
        return _mds_create(invoke_id, managed, attrs)
    raise IntellivueDecodeError(f"unexpected event type {event}")


def _mac(value: Reader) -> str:
    length = value.u16("label length")
    return value.take(length, "label").hex()


def _label(value: Reader) -> str:
    raw = value.take(value.u16("label length"), "label")
    return raw.rstrip(b"\x00").decode("ascii", "replace")


def _string(value: Reader) -> str:
    raw = value.take(value.u16("string length"), "string")
    try:
        return raw.decode("utf-16-be").rstrip("\x00")
    except UnicodeDecodeError:
        raise IntellivueDecodeError("string is not UTF-16") from None


def _connect_indication(info: Reader) -> ConnectIndication:
    attrs = dict(info.attribute_list("connect indication attributes"))
    system_id = _mac(attrs[n.NOM_ATTR_SYS_ID]) if n.NOM_ATTR_SYS_ID in attrs else ""
    ip = port = None
    if n.NOM_ATTR_NET_ADDR_INFO in attrs:
        a = attrs[n.NOM_ATTR_NET_ADDR_INFO]
        a.take(6, "MAC address")
        ip = ".".join(str(b) for b in a.take(4, "IP address"))
    if n.NOM_ATTR_PCOL_SUPPORT in attrs:
        p = attrs[n.NOM_ATTR_PCOL_SUPPORT]
        count = p.u16("protocol count")
        p.u16("protocol list length")
        for _ in range(count):
            p.u16("application protocol")
            transport = p.u16("transport protocol")
            number = p.u16("port number")
            p.u16("options")
            if transport == 1:  # UDP
                port = number
    return ConnectIndication(system_id, ip, port)


def _mds_create(invoke_id: int, managed: bytes, attrs: dict[int, Reader]) -> MdsCreateEvent:
    manufacturer = model = None
    if n.NOM_ATTR_ID_MODEL in attrs:
        a = attrs[n.NOM_ATTR_ID_MODEL]
        manufacturer, model = _label(a), _label(a)
    return MdsCreateEvent(
        invoke_id, managed,
        _mac(attrs[n.NOM_ATTR_SYS_ID]) if n.NOM_ATTR_SYS_ID in attrs else None,
        manufacturer, model,
        _string(attrs[n.NOM_ATTR_ID_BED_LABEL]) if n.NOM_ATTR_ID_BED_LABEL in attrs else None,
        decode_abs_time(attrs[n.NOM_ATTR_TIME_ABS].take(8, "absolute time"))
        if n.NOM_ATTR_TIME_ABS in attrs else None)


def _result(r: Reader, linked: int | None) -> PollResult | KeepAliveResult:
    invoke_id = r.u16("invoke id")
    command = r.u16("command type")
    res = r.sub(r.u16("result length"), "result")
    if command == n.CMD_GET:
        res.take(6, "managed object")
        attrs = dict(res.attribute_list("MDS attributes"))
        when = attrs.get(n.NOM_ATTR_TIME_ABS)
        return KeepAliveResult(invoke_id, None if when is None else
                               decode_abs_time(when.take(8, "absolute time")))
    if command != n.CMD_CONFIRMED_ACTION:
        raise IntellivueDecodeError(f"unexpected result for command {command}")
    res.take(6, "managed object")
    action = res.u16("action type")
    reply = res.sub(res.u16("action result length"), "poll reply")
    if action not in (n.NOM_ACT_POLL_MDIB_DATA_EXT, n.NOM_ACT_POLL_MDIB_DATA):
        raise IntellivueDecodeError(f"unexpected action type {action}")
    return _poll_reply(reply, invoke_id, linked, extended=action == n.NOM_ACT_POLL_MDIB_DATA_EXT)


def _poll_reply(r: Reader, invoke_id: int, linked: int | None, *, extended: bool) -> PollResult:
    poll_number = r.u16("poll number")
    if extended:
        r.u16("sequence number")
    rel_time = r.u32("relative time")
    device_time = decode_abs_time(r.take(8, "absolute time"))
    r.u16("polled object partition")
    obj_type = r.u16("polled object type")
    r.u16("polled attribute group")
    numerics: list[NumericValue] = []
    waves: list[WaveValue] = []
    contexts = r.u16("poll info count")
    info = r.sub(r.u16("poll info length"), "poll info list")
    for _ in range(contexts):
        info.u16("context id")
        count = info.u16("observation count")
        polls = info.sub(info.u16("observation list length"), "observation list")
        for _ in range(count):
            handle = polls.u16("object handle")
            _observation(handle, polls.attribute_list(f"object {handle} attributes"), numerics, waves)
    return PollResult(invoke_id, poll_number, obj_type, rel_time, device_time, numerics, waves, linked)


def _nu(handle: int, v: Reader) -> NumericValue:
    physio, state, unit = v.u16("physio id"), v.u16("state"), v.u16("unit code")
    value, special = decode_float(v.u32("FLOAT value"))
    return NumericValue(handle, physio, state, unit, value, special)


def _sa(v: Reader) -> tuple[int, int, bytes]:
    physio, state = v.u16("physio id"), v.u16("state")
    return physio, state, v.take(v.u16("sample array length"), "sample array")


def _observation(handle: int, attrs: list[tuple[int, Reader]], numerics: list[NumericValue],
                 waves: list[WaveValue]) -> None:
    arrays: list[tuple[int, int, bytes]] = []
    period = unit = scale = None
    bits = 16
    for attr, v in attrs:
        if attr == n.NOM_ATTR_NU_VAL_OBS:
            numerics.append(_nu(handle, v))
        elif attr == n.NOM_ATTR_NU_CMPD_VAL_OBS:
            count = v.u16("compound count")
            v.u16("compound length")
            numerics.extend(_nu(handle, v) for _ in range(count))
        elif attr == n.NOM_ATTR_SA_VAL_OBS:
            arrays.append(_sa(v))
        elif attr == n.NOM_ATTR_SA_CMPD_VAL_OBS:
            count = v.u16("compound count")
            v.u16("compound length")
            arrays.extend(_sa(v) for _ in range(count))
        elif attr == n.NOM_ATTR_TIME_PD_SAMP:
            period = v.u32("sample period") / 8.0
        elif attr == n.NOM_ATTR_UNIT_CODE:
            unit = v.u16("unit code")
        elif attr == n.NOM_ATTR_SA_SPECN:
            v.u16("array size")
            v.u8("sample size")
            bits = v.u8("significant bits") or 16
        elif attr == n.NOM_ATTR_SCALE_SPECN_I16:
            lo, _ = decode_float(v.u32("scale low"))
            hi, _ = decode_float(v.u32("scale high"))
            scale = (lo or 0.0, hi or 0.0, v.u16("scaled low"), v.u16("scaled high"))
    mask = (1 << bits) - 1
    for physio, state, raw in arrays:
        samples = u16_samples(raw)
        values = samples.tolist()
        if mask != 0xFFFF and values and max(values) > mask:  # flag bits set: mask them (rare)
            values = [s & mask for s in values]
        waves.append(WaveValue(handle, physio, state, values, period, unit, scale))
