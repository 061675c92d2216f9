"""Poll a Puritan Bennett 840/980 through a serial device server (RS-232 over TCP).

Sends the profile's poll command (``SNDF\\r``) every ``poll_interval_s``, reads each
response up to ``ETX CR`` with a size cap, decodes it with ``mappers.pb840`` and hands the
record to an async callback. A ventilator that stays silent past the profile's
``stale_timeout_s`` is reported once as a ``silent`` device-status event; polling goes on
and the first good response reports ``responding``. A dropped or refused connection is
retried with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from mappers.pb840 import DecodedVentRecord, VentDecodeError, decode_response
from mappers.profile_schema import Pb840Transport, Profile

__all__ = ["DeviceStatusEvent", "Pb840Client"]

log = logging.getLogger(__name__)

Status = Literal["connected", "silent", "responding", "disconnected", "clock-drift", "clock-ok"]
RecordCallback = Callable[[DecodedVentRecord], Awaitable[None]]
StatusCallback = Callable[["DeviceStatusEvent"], Awaitable[None]]
ErrorCallback = Callable[[bytes, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeviceStatusEvent:
    """A change in the feed's state (becomes a technical alert downstream)."""

    endpoint: str
    device_id: str | None
    status: Status
    at: datetime
    reason: str
    drift_s: float | None = None  # for clock-drift / clock-ok: device clock minus gateway time


class Pb840Client:
    def __init__(self, host: str, port: int, profile: Profile, *, on_record: RecordCallback,
                 on_status: StatusCallback, on_error: ErrorCallback | None = None,
                 device_id: str | None = None, poll_interval_s: float | None = None,
                 stale_timeout_s: float | None = None, backoff_s: tuple[float, float] = (0.5, 30.0)
                 ) -> None:
        if not isinstance(profile.transport, Pb840Transport):
            raise ValueError(f"profile {profile.id} is not a pb840-serial-tcp profile")
        self.host, self.port, self.profile = host, port, profile
        self.transport = profile.transport
        self.poll_interval = poll_interval_s or self.transport.poll_interval_s
        self.stale_timeout = stale_timeout_s or profile.timing.stale_timeout_s
        self.device_id = device_id
        self._on_record, self._on_status, self._on_error = on_record, on_status, on_error
        self._backoff = backoff_s
        self._stop = asyncio.Event()
        self._silent = False
        self._last_status: Status | None = None
        self._last_response = time.monotonic()
        self.records = 0

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Poll until :meth:`stop`; never raises for device or network trouble."""
        delay = self._backoff[0]
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, limit=self.transport.max_response_bytes)
            except OSError as exc:
                await self._status("disconnected", f"connect failed: {exc}")
                await self._sleep(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            await self._status("connected", "TCP connection open")
            try:
                await self._poll_loop(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                await self._status("disconnected", f"connection lost: {exc!r}")
            except asyncio.LimitOverrunError:
                await self._status("disconnected", "response exceeds the size cap")
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _poll_loop(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        command = self.transport.poll_command.encode("ascii") + b"\r"
        self._last_response = time.monotonic()
        while not self._stop.is_set():
            started = time.monotonic()
            writer.write(command)
            await writer.drain()
            try:
                frame = await asyncio.wait_for(reader.readuntil(b"\x03\r"), self.poll_interval)
            except TimeoutError:
                frame = None
            if frame is not None:
                await self._handle(frame)
            await self._check_silence()
            await self._sleep(self.poll_interval - (time.monotonic() - started))

    async def _handle(self, frame: bytes) -> None:
        # After a poll timed out mid-response, a late tail can precede the next full
        # response in the same read: the last header starts the frame we can use.
        start = frame.rfind(b"MISC")
        if start > 0:
            log.warning("%s: %d bytes before the header skipped", self.endpoint, start)
            frame = frame[start:]
        try:
            record = decode_response(frame, self.profile, received_at=datetime.now(UTC),
                                     device_id=self.device_id)
        except VentDecodeError as exc:
            log.warning("%s: undecodable response: %s", self.endpoint, exc.reason)
            if self._on_error is not None:
                await self._on_error(frame, exc.reason)
            return
        self._last_response = time.monotonic()
        self.device_id = self.device_id or record.device_id
        if self._silent:
            self._silent = False
            await self._status("responding", "responses resumed")
        self.records += 1
        await self._on_record(record)

    async def _check_silence(self) -> None:
        quiet = time.monotonic() - self._last_response
        if not self._silent and quiet >= self.stale_timeout:
            self._silent = True
            await self._status("silent", f"no valid response for {quiet:.1f} s")

    async def _status(self, status: Status, reason: str) -> None:
        if status == "disconnected" and self._last_status == "disconnected":
            return  # one event per outage, not one per retry
        self._last_status = status
        event = DeviceStatusEvent(self.endpoint, self.device_id, status, datetime.now(UTC),
                                  reason)
        await self._on_status(event)

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
