"""Puritan Bennett 840 simulator: a TCP server answering ``SNDF`` / ``SNDA`` polls.

It stands in for a serial device server with a ventilator behind it. Responses are built
here from the bed's physiology by an encoder written independently of
``mappers.pb840`` (it knows the wire layout, not the decoder). ``silent = True`` (or a
``device-disconnect`` scenario) makes it ignore polls, like an unplugged ventilator.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime

from gateway.simulators.physiology import Physiology, Vitals

__all__ = ["Pb840Simulator", "Pb840WaveformPort", "VentSettings", "encode_misca", "encode_miscf",
           "waveform_lines"]

_WIDTH = {6: 18, 7: 12, 8: 9, 50: 9, 53: 18, 55: 9, 66: 9, 156: 9}
_MISCF_LAST = 173  # fields 5..173 = 169 fields
_MISCA_LAST = 101  # fields 5..101 = 97 fields


@dataclass(frozen=True, slots=True)
class VentSettings:
    model: str = "840"
    serial: str = "3510099999"
    mode: str = "A/C"
    mandatory: str = "VC"
    spontaneous: str = ""
    set_rr: float = 14.0
    set_vt_l: float = 0.45
    peep: float = 5.0
    peak_flow: float = 55.0


def _frame(name: str, fields: dict[int, str], last: int, count_pad: str) -> bytes:
    parts = []
    for n in range(5, last + 1):
        text = fields.get(n, "")
        parts.append(text.ljust(_WIDTH.get(n, 6)) + ",")
    body = "".join(parts).encode("ascii")
    head = f"{name},{len(body)},{last - 4}{count_pad},".encode("ascii")
    return head + b"\x02" + body + b"\x03\r"


def _clock(now: datetime) -> tuple[str, str]:
    return now.strftime("%H:%M"), now.strftime("%b %d %Y").upper()


def _measured(v: Vitals, s: VentSettings) -> dict[str, float]:
    vte = s.set_vt_l * (1.0 - max(0.0, 95 - v.spo2) / 100)
    rr = max(s.set_rr, v.rr)
    ppeak = 14 + s.peep + vte * 20 + (100 - v.spo2) * 0.3
    return {"rr": rr, "vte": vte, "ve": rr * vte, "ppeak": ppeak,
            "pmean": s.peep + (ppeak - s.peep) * 0.3, "peep": s.peep + 0.3}


def encode_miscf(v: Vitals, s: VentSettings, now: datetime, alarms: dict[int, str] | None = None
                 ) -> bytes:
    """A MISCF record (169 fields) for these vitals and settings."""
    hhmm, date = _clock(now)
    m = _measured(v, s)
    f = {5: hhmm, 6: f"{s.model} {s.serial}", 7: date, 8: "INVASIVE", 9: s.mode,
         10: s.mandatory, 11: s.spontaneous, 12: "V-Trig", 13: f"{s.set_rr:.1f}",
         14: f"{s.set_vt_l:.3f}", 15: f"{s.peak_flow:.1f}", 16: f"{v.fio2:.0f}",
         18: f"{s.peep:.1f}", 34: "50", 36: "23.000", 37: "4.500", 38: "1200", 39: "350",
         42: "40", 60: "70.0", 66: "ADULT", 69: f"{m['ppeak'] - 1:.1f}", 70: f"{m['rr']:.1f}",
         71: f"{m['vte']:.3f}", 72: f"{m['ve']:.3f}", 73: f"{m['ppeak']:.1f}",
         74: f"{m['pmean']:.1f}", 75: "2.00", 76: "1:2.00", 77: f"{v.fio2:.0f}",
         87: f"{m['peep']:.1f}", 105: "OFF"}
    for n in range(106, 154):
        f[n] = "NORMAL"
    f.update(alarms or {})
    return _frame("MISCF", f, _MISCF_LAST, " ")


def encode_misca(v: Vitals, s: VentSettings, now: datetime) -> bytes:
    """A MISCA record (97 fields, the 840 legacy set)."""
    hhmm, date = _clock(now)
    m = _measured(v, s)
    mode = {"A/C": "CMV", "SPONT": "CPAP"}.get(s.mode, s.mode)
    f = {5: hhmm, 6: f"{s.model} {s.serial}", 8: date, 9: mode, 10: f"{s.set_rr:.1f}",
         11: f"{s.set_vt_l:.2f}", 12: f"{s.peak_flow:.0f}", 13: f"{v.fio2:.0f}",
         15: f"{s.peep:.1f}", 34: f"{m['rr']:.0f}", 35: f"{m['vte']:.2f}",
         36: f"{m['ve']:.2f}", 38: f"{m['ppeak']:.1f}", 39: f"{m['pmean']:.1f}", 42: "50",
         47: "40", 60: hhmm, 62: date, 93: "OFF", 101: "1:2.00"}
    for n in (48, 51, 52, 53, 54, 55, 57, 94, 95):
        f[n] = "NORMAL"
    return _frame("MISCA", f, _MISCA_LAST, "")


class Pb840Simulator:
    """TCP server on ``host:port`` (0 = pick a free port) answering polls from physiology."""

    def __init__(self, physiology: Physiology, settings: VentSettings | None = None, *,
                 host: str = "127.0.0.1", port: int = 0,
                 clock: type[datetime] = datetime) -> None:
        self.physiology = physiology
        self.settings = settings or VentSettings()
        self.host, self.port = host, port
        self.silent = False
        self.polls_answered = 0
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._last = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await self._server.wait_closed()

    def _vitals(self) -> Vitals:
        now = time.monotonic()
        vitals = self.physiology.advance(now - self._last)
        self._last = now
        return vitals

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                line = await reader.readuntil(b"\r")
                reply = self._answer(line.strip().upper())
                if reply:
                    writer.write(reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, command: bytes) -> bytes | None:
        vitals = self._vitals()
        if self.silent or not self.physiology.connected():
            return None
        now = self._clock.now().astimezone()
        self.polls_answered += 1
        if command == b"SNDF":
            return encode_miscf(vitals, self.settings, now)
        if command == b"SNDA":
            return encode_misca(vitals, self.settings, now)
        return None  # RSET and unknown commands get no answer, as on the device


def waveform_lines(flow: list[float], pressure: list[float], breath: int | None = None,
                   end: bool = False) -> bytes:
    """Waveform-port text: optional ``BS, S:<n>,`` start, ``flow, pressure`` lines, optional ``BE``."""
    out = [f"BS, S:{breath},\r\n"] if breath is not None else []
    out += [f"{f:.2f}, {p:.2f}\r\n" for f, p in zip(flow, pressure, strict=True)]
    if end:
        out.append("BE\r\n")
    return "".join(out).encode("ascii")


class Pb840WaveformPort:
    """The ventilator's unsolicited 50 Hz waveform port as a TCP server (one stream per client).

    Samples are written every ``chunk_s`` (as a serial device server would forward them), with
    ``BS`` / ``BE`` around each breath.
    """

    def __init__(self, physiology: Physiology, settings: VentSettings | None = None, *,
                 host: str = "127.0.0.1", port: int = 0, chunk_s: float = 0.2) -> None:
        from gateway.simulators.waveforms import VentWaves

        self.physiology = physiology
        self.settings = settings or VentSettings()
        self.host, self.port, self.chunk_s = host, port, chunk_s
        self.silent = False
        self.samples_sent = 0
        self._waves = VentWaves(peep=self.settings.peep)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        breath, phase_in_breath = 0, 0
        try:
            writer.write(f"BS, S:{breath},\r\n".encode())
            next_at = time.monotonic()
            while True:
                next_at += self.chunk_s
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                if self.silent or not self.physiology.connected():
                    continue
                v = self.physiology.vitals
                ppeak = _measured(v, self.settings)["ppeak"]
                paw, flow = self._waves.block(v, ppeak, self.chunk_s)
                per_breath = max(1, round(50 * 60 / max(v.rr, 4.0)))
                out = bytearray()
                for f, p in zip(flow, paw, strict=True):
                    out += waveform_lines([f], [p])
                    phase_in_breath += 1
                    if phase_in_breath >= per_breath:
                        breath, phase_in_breath = breath + 1, 0
                        out += f"BE\r\nBS, S:{breath},\r\n".encode()
                self.samples_sent += len(paw)
                writer.write(bytes(out))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
