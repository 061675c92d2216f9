"""A Philips IntelliVue monitor speaking the LAN Data Export protocol over UDP.

Written from the protocol layout, independently of ``mappers.intellivue`` (it never imports
the decoder or the client's encoders). It answers an association request with an accept
(or a refuse when the request is malformed), sends the MDS Create Event and waits for its
result, then answers extended poll requests for numerics (15 values at 1 Hz, one compound
NBP) and waves (ECG II 250 Hz, pleth and ABP 125 Hz; with ``waves="full"`` ECG I, II, III
and V at 500 Hz; replies above ``max_datagram`` are split into linked results), MDS Get
keep-alives, release requests and aborts. An association with no message for
``association_timeout_s`` is dropped with an abort, as a monitor does.
``clock_offset_s`` skews the monitor's clock; ``silent`` ignores everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from datetime import UTC, datetime, timedelta

from gateway.simulators.physiology import Physiology, Vitals
from gateway.simulators.waveforms import MonitorWaves

__all__ = ["IntellivueSimulator", "connect_indication"]

_E1 = 0xE100
_ROIV, _RORS, _ROLRS = 1, 2, 5
_CMD_CONFIRMED_EVENT_REPORT, _CMD_GET, _CMD_CONFIRMED_ACTION = 1, 3, 7
_POLL_EXT, _POLL = 61755, 3094
_NUMERIC, _WAVE = 6, 9
_MDS_OBJECT = struct.pack(">HHH", 33, 0, 0)

# (physio id, unit code, vital attribute, decimals); the NBP triple goes as one compound value
_NUMERICS = (
    (0x4182, 0x0AA0, "hr", 0), (0x4BB8, 0x0220, "spo2", 0), (0x4822, 0x0AA0, "hr", 0),
    (0x500A, 0x0AE0, "rr", 0), (0x5012, 0x0AE0, "rr", 0), (0x4A15, 0x0F20, "sbp", 0),
    (0x4A16, 0x0F20, "dbp", 0), (0x4A17, 0x0F20, "map", 0), (0x4B48, 0x17A0, "temp", 1),
    (0x50B0, 0x0F20, "etco2", 0), (0x4BB0, 0x0200, "perf", 2), (0x4A47, 0x0F20, "cvp", 0),
)
_NBP = ((0x4A05, "sbp"), (0x4A06, "dbp"), (0x4A07, "map"))
# (wave key, physio id, unit code, rate Hz, low abs, high abs, low scaled, high scaled, bits)
_ECG = (-8192.0, 8191.0, 0, 16383, 14)
_WAVES = (
    ("ecg_ii", 0x0102, 0x10B3, 250, *_ECG),
    ("pleth", 0x4BB4, 0x0200, 125, 0.0, 4095.0, 0, 4095, 12),
    ("abp", 0x4A14, 0x0F20, 125, -40.0, 520.0, 0, 5600, 13),
)
# ``waves="full"``: four ECG leads at 500 Hz plus pleth and ABP (2,250 samples/s per monitor)
_FULL_WAVES = (
    ("ecg_i", 0x0101, 0x10B3, 500, *_ECG), ("ecg_ii", 0x0102, 0x10B3, 500, *_ECG),
    ("ecg_iii", 0x013D, 0x10B3, 500, *_ECG), ("ecg_v", 0x0143, 0x10B3, 500, *_ECG),
    *_WAVES[1:],
)


def _float(value: float, decimals: int) -> int:
    """FLOAT-Type: exponent byte, 24-bit two's-complement mantissa."""
    mantissa = int(round(value * 10**decimals))
    return ((-decimals) & 0xFF) << 24 | (mantissa & 0xFFFFFF)


def _bcd(v: int) -> int:
    return (v // 10) << 4 | v % 10


def _abs_time(at: datetime) -> bytes:
    return bytes(_bcd(x) for x in (at.year // 100, at.year % 100, at.month, at.day, at.hour,
                                   at.minute, at.second, at.microsecond // 10_000))


def _ava(attr: int, value: bytes) -> bytes:
    return struct.pack(">HH", attr, len(value)) + value


def _attr_list(avas: list[bytes]) -> bytes:
    body = b"".join(avas)
    return struct.pack(">HH", len(avas), len(body)) + body


def _label(text: str) -> bytes:
    raw = text.encode("ascii")
    raw += b"\x00" * (len(raw) % 2)
    return struct.pack(">H", len(raw)) + raw


def _envelope(ro_type: int, body: bytes) -> bytes:
    return struct.pack(">HHHH", _E1, 2, ro_type, len(body)) + body


def connect_indication(system_id: bytes, ip: str, port: int) -> bytes:
    """The monitor's Connect Indication event report (broadcast on UDP 24005)."""
    net = system_id + bytes(int(p) for p in ip.split(".")) + bytes([255, 255, 255, 0])
    proto = struct.pack(">HH", 1, 8) + struct.pack(">HHHH", 1, 1, port, 0)
    info = _attr_list([_ava(0x0984, struct.pack(">H", len(system_id)) + system_id),
                       _ava(0xF100, net), _ava(0xF101, proto)])
    arg = _MDS_OBJECT + struct.pack(">IHH", 0, 3351, len(info)) + info
    return _envelope(_ROIV, struct.pack(">HHH", 0, 0, len(arg)) + arg)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, sim: IntellivueSimulator) -> None:
        self.sim = sim

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sim.on_datagram(data, addr)


class IntellivueSimulator:
    def __init__(self, physiology: Physiology, *, host: str = "127.0.0.1", port: int = 0,
                 system_id: bytes = b"\x00\x09\xfb\x12\x34\x56", bed_label: str = "ICU-01",
                 model: str = "MX800", association_timeout_s: float = 10.0,
                 clock_offset_s: float = 0.0, max_datagram: int = 1400, waves: str = "standard") -> None:
        if waves not in ("standard", "full"):
            raise ValueError(f"waves must be 'standard' or 'full', not {waves!r}")
        self._wave_table = _FULL_WAVES if waves == "full" else _WAVES
        self.phys, self.host, self.port = physiology, host, port
        self.system_id, self.bed_label, self.model = system_id, bed_label, model
        self.association_timeout_s = association_timeout_s
        self.clock_offset_s = clock_offset_s
        self.max_datagram = max_datagram
        self.silent = False
        self.peer: tuple[str, int] | None = None
        self.state = "idle"  # idle | awaiting-mds-result | associated
        self.associations = self.polls_answered = self.ignored = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._last_rx = 0.0
        self._last_advance = time.monotonic()
        self._last_wave = time.monotonic()
        self._waves = MonitorWaves({k: r for k, _, _, r, *_ in self._wave_table})
        self._watchdog: asyncio.Task[None] | None = None
        self._started = time.monotonic()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self),
                                                           local_addr=(self.host, self.port))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        self._watchdog = asyncio.create_task(self._watch(), name=f"intellivue-sim-{self.port}")

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._transport is not None:
            self._transport.close()

    def send_connect_indication(self, target: tuple[str, int]) -> None:
        assert self._transport is not None
        self._transport.sendto(connect_indication(self.system_id, self.host if self.host != "0.0.0.0"
                                                  else "127.0.0.1", self.port), target)

    def send_raw(self, data: bytes) -> None:
        """Send arbitrary bytes to the associated client (fault injection for tests)."""
        self._send(data)

    def abort(self) -> None:
        """Drop the association as a monitor restart would (an abort SPDU to the client)."""
        if self.peer is not None and self._transport is not None:
            self._transport.sendto(bytes([0x19, 0x00]), self.peer)
        self.peer, self.state = None, "idle"

    # -- receiving ------------------------------------------------------------------------

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.silent or not data:
            return
        if data[0] == 0x0D:
            self._associate(data, addr)
            return
        if addr != self.peer:
            self.ignored += 1
            return
        self._last_rx = time.monotonic()
        if data[0] == 0x09:  # release request -> release response
            self._send(bytes([0x0A, 0x00]))
            self.peer, self.state = None, "idle"
        elif data[0] == 0x19:
            self.peer, self.state = None, "idle"
        elif data[:2] == b"\xe1\x00" and len(data) >= 14:
            self._operation(data)
        else:
            self.ignored += 1

    def _associate(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 2 or data[1] + 2 != len(data) or b"\xbe\x80\x28\x80" not in data:
            assert self._transport is not None
            self._transport.sendto(bytes([0x0C, 0x03, 0x11, 0x01, 0x00]), addr)  # refuse
            return
        self.peer, self.state = addr, "awaiting-mds-result"
        self._last_rx = time.monotonic()
        self.associations += 1
        self._send(self._accept())
        self._send(self._mds_create())

    def _operation(self, data: bytes) -> None:
        ro_type, _ = struct.unpack_from(">HH", data, 4)
        invoke_id, command = struct.unpack_from(">HH", data, 8)
        if ro_type == _RORS and command == _CMD_CONFIRMED_EVENT_REPORT:
            self.state = "associated"
        elif self.state != "associated":
            self.ignored += 1
        elif ro_type == _ROIV and command == _CMD_GET:
            self._send(self._get_result(invoke_id))
        elif ro_type == _ROIV and command == _CMD_CONFIRMED_ACTION and len(data) >= 34:
            action = struct.unpack_from(">H", data, 24)[0]
            poll_number, _, obj = struct.unpack_from(">HHH", data, 28)
            if action in (_POLL_EXT, _POLL) and obj in (_NUMERIC, _WAVE):
                for part in self._poll_reply(invoke_id, poll_number, obj, action):
                    self._send(part)
                self.polls_answered += 1
            else:
                self._send(_envelope(3, struct.pack(">HH", invoke_id, 3)))  # ROER: no such action
        else:
            self.ignored += 1

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.association_timeout_s / 4))
            if self.peer is not None and time.monotonic() - self._last_rx > self.association_timeout_s:
                self.abort()

    # -- sending --------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self._transport is not None and self.peer is not None:
            self._transport.sendto(data, self.peer)

    def _now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)

    def _rel_time(self) -> int:
        return int((time.monotonic() - self._started) * 8000) & 0xFFFFFFFF

    def _accept(self) -> bytes:
        profile = struct.pack(">IIIIII", 0x80000000, 1000, 1000, 1400, 0xFFFFFFFF, 0x60000000) + \
            struct.pack(">HH", 0, 0)
        user = struct.pack(">IIIII", 0x80000000, 0x40000000, 0, 0x80000000, 0x20000000) + \
            struct.pack(">HH", 0, 0) + _attr_list([_ava(0x0001, profile)])
        presentation = bytes.fromhex("3180a08080010100 00a280a00300000 1a4803080020101"
                                     "0604520100013080 06025101".replace(" ", "")) + bytes(4) + \
            bytes.fromhex("6180308002010 1a0806180a28030800201010000be802880020102".replace(" ", "")) + \
            bytes([0x81, len(user)]) + user + bytes(16)
        body = bytes.fromhex("0508130100160102 80001402000 2".replace(" ", "")) + \
            bytes([0xC1, len(presentation)]) + presentation
        return bytes([0x0E, len(body)]) + body

    def _mds_create(self) -> bytes:
        attrs = _attr_list([
            _ava(0x0984, struct.pack(">H", len(self.system_id)) + self.system_id),
            _ava(0x0928, _label("Philips Medical Systems") + _label(self.model)),
            _ava(0x091E, struct.pack(">H", 2 * len(self.bed_label)) + self.bed_label.encode("utf-16-be")),
            _ava(0x0987, _abs_time(self._now())),
        ])
        info = _MDS_OBJECT + attrs
        arg = _MDS_OBJECT + struct.pack(">IHH", self._rel_time(), 3334, len(info)) + info
        return _envelope(_ROIV, struct.pack(">HHH", 1, _CMD_CONFIRMED_EVENT_REPORT, len(arg)) + arg)

    def _get_result(self, invoke_id: int) -> bytes:
        res = _MDS_OBJECT + _attr_list([_ava(0x0987, _abs_time(self._now()))])
        return _envelope(_RORS, struct.pack(">HHH", invoke_id, _CMD_GET, len(res)) + res)

    def _vitals(self) -> Vitals:
        now = time.monotonic()
        v = self.phys.advance(max(0.0, now - self._last_advance))
        self._last_advance = now
        return v

    def _numeric_polls(self, v: Vitals) -> list[bytes]:
        values = {"hr": v.hr, "spo2": v.spo2, "rr": v.rr, "sbp": v.sbp, "dbp": v.dbp, "map": v.map,
                  "temp": v.temp, "etco2": v.etco2, "perf": 2.5 * v.spo2 / 97, "cvp": 8.0}
        polls = []
        for handle, (physio, unit, attr, dec) in enumerate(_NUMERICS, start=10):
            nu = struct.pack(">HHHI", physio, 0, unit, _float(values[attr], dec))
            polls.append(struct.pack(">H", handle) + _attr_list([_ava(0x0950, nu)]))
        nbp = b"".join(struct.pack(">HHHI", p, 0, 0x0F20, _float(values[a], 0)) for p, a in _NBP)
        polls.append(struct.pack(">H", 40) + _attr_list([_ava(0x094B, struct.pack(">HH", 3, len(nbp)) + nbp)]))
        return polls

    def _wave_polls(self, v: Vitals) -> list[bytes]:
        now = time.monotonic()
        seconds = min(2.0, max(0.1, now - self._last_wave))
        self._last_wave = now
        block = self._waves.block(v, seconds)
        polls = []
        for handle, (key, physio, unit, rate, lo, hi, lo_s, hi_s, bits) in enumerate(self._wave_table, start=50):
            k = (hi_s - lo_s) / (hi - lo)
            scaled = [min(hi_s, max(lo_s, round(lo_s + (x - lo) * k))) for x in block[key]]
            raw = struct.pack(f">{len(scaled)}H", *scaled)
            polls.append(struct.pack(">H", handle) + _attr_list([
                _ava(0x096D, struct.pack(">HBBH", len(scaled), 16, bits, 0)),
                _ava(0x096F, struct.pack(">IIHH", _float(lo, 0), _float(hi, 0), lo_s, hi_s)),
                _ava(0x098D, struct.pack(">I", round(8000 / rate))),
                _ava(0x0996, struct.pack(">H", unit)),
                _ava(0x096E, struct.pack(">HHH", physio, 0, len(raw)) + raw),
            ]))
        return polls

    def _poll_reply(self, invoke_id: int, poll_number: int, obj: int, action: int) -> list[bytes]:
        v = self._vitals()
        polls = self._numeric_polls(v) if obj == _NUMERIC else self._wave_polls(v)
        groups: list[list[bytes]] = [[]]
        for p in polls:  # split into linked parts that fit one datagram
            if groups[-1] and sum(map(len, groups[-1])) + len(p) > self.max_datagram - 80:
                groups.append([])
            groups[-1].append(p)
        head = struct.pack(">HH", poll_number, 0) if action == _POLL_EXT else struct.pack(">H", poll_number)
        out = []
        for i, group in enumerate(groups):
            body = b"".join(group)
            contexts = struct.pack(">HHH", 0, len(group), len(body)) + body
            reply = head + struct.pack(">I", self._rel_time()) + _abs_time(self._now()) + \
                struct.pack(">HHH", 1, obj, 0) + struct.pack(">HH", 1, len(contexts)) + contexts
            result = _MDS_OBJECT + struct.pack(">HH", action, len(reply)) + reply
            op = struct.pack(">HHH", invoke_id, _CMD_CONFIRMED_ACTION, len(result)) + result
            if len(groups) == 1:
                out.append(_envelope(_RORS, op))
            else:
                state = 1 if i == 0 else (3 if i == len(groups) - 1 else 2)
                out.append(_envelope(_ROLRS, bytes([state, i + 1]) + op))
        return out
