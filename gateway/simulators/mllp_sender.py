"""Minimal asyncio MLLP client: frame a message, send it, await its ACK.

Written on its own (no shared framing code with the gateway's listener) so the simulator
and the tests exercise the server's framing from the outside.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["MllpSender", "ack_code"]

START, END = b"\x0b", b"\x1c\r"


def ack_code(ack: bytes) -> str | None:
    """MSA-1 of an ACK payload (``AA``, ``AE``, ``CA``...), or None when there is no MSA."""
    for segment in ack.replace(b"\n", b"\r").split(b"\r"):
        if segment.startswith(b"MSA"):
            sep = segment[3:4] or b"|"
            parts = segment.split(sep)
            return parts[1].decode("ascii", "replace") if len(parts) > 1 else None
    return None


class MllpSender:
    """One connection; :meth:`send` is sequential (one message in flight)."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 10.0,
                 max_ack_bytes: int = 65_536) -> None:
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self.max_ack_bytes = max_ack_bytes
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=self.max_ack_bytes),
            self.timeout_s)

    async def send(self, message: bytes) -> bytes:
        """Send one HL7 message (segments joined by CR) and return the ACK payload."""
        async with self._lock:
            if self._writer is None or self._reader is None:
                await self.connect()
            assert self._writer is not None and self._reader is not None
            self._writer.write(START + message + END)
            await self._writer.drain()
            raw = await asyncio.wait_for(self._reader.readuntil(END), self.timeout_s)
            start = raw.find(START)
            return raw[start + 1 : -len(END)] if start >= 0 else raw[: -len(END)]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def __aenter__(self) -> MllpSender:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
