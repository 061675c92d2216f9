"""Read a PB840/980 waveform port (unsolicited 50 Hz stream) through a serial device server.

Connects over TCP, feeds the bytes to ``mappers.pb840.WaveformStream`` and hands every
complete one-second segment, stamped with the receipt time of its last sample, to an async
callback. Malformed lines go to ``on_error`` (kept as dead letters by the caller). A dropped
connection is retried with capped backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from mappers.pb840 import WaveformStream, WaveSegment

__all__ = ["Pb840WaveformClient"]

log = logging.getLogger(__name__)

SegmentCallback = Callable[[WaveSegment, datetime], Awaitable[None]]
ErrorCallback = Callable[[bytes, str], Awaitable[None]]


class Pb840WaveformClient:
    def __init__(self, host: str, port: int, *, on_segment: SegmentCallback,
                 on_error: ErrorCallback | None = None, backoff_s: tuple[float, float] = (0.5, 30.0)) -> None:
        self.host, self.port = host, port
        self._on_segment, self._on_error = on_segment, on_error
        self._backoff = backoff_s
        self._stop = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self.segments = 0

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        if self._writer is not None:  # ends a pending read: no stop-watching task per read
            self._writer.close()

    async def run(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                log.info("pb840 waveforms %s: connect failed: %s", self.endpoint, exc)
                await self._sleep(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            self._writer = writer
            try:
                await self._read(reader)
            except ConnectionError as exc:
                log.info("pb840 waveforms %s: connection lost: %r", self.endpoint, exc)
            finally:
                self._writer = None
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        stream = WaveformStream()
        while not self._stop.is_set():
            data = await reader.read(65536)
            if not data or self._stop.is_set():
                return
            segments = stream.feed(data)
            if stream.bad_lines:
                bad, stream.bad_lines = stream.bad_lines, []
                for line in bad:
                    log.warning("pb840 waveforms %s: malformed line skipped", self.endpoint)
                    if self._on_error is not None:
                        await self._on_error(line, "malformed waveform line")
            now = datetime.now(UTC)
            for seg in segments:
                self.segments += 1
                await self._on_segment(seg, now)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
