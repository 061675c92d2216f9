"""A small MLLP sender: one connection, one message in flight (``call``), or pipelined
``send``/``receive``. Used by the tests, the benchmark and device simulators."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from .framing import Frame, FrameReader, frame


class MllpClient:
    """``async with MllpClient(host, port) as c: ack = await c.call(payload)``."""

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = 10.0) -> None:
        self.host, self.port, self.ssl, self.timeout = host, port, ssl_context, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._frames: FrameReader | None = None

    async def __aenter__(self) -> MllpClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl, limit=1 << 20)
        self._frames = FrameReader(self._reader, max_frame=1 << 24)

    async def send_raw(self, data: bytes) -> None:
        """Bytes as they are (no framing): for garbage and split-frame tests."""
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def send(self, payload: bytes) -> None:
        await self.send_raw(frame(payload))

    async def receive(self, timeout: float | None = None) -> bytes | None:
        """The next ACK payload, or None when the server closed the connection."""
        assert self._frames is not None
        try:
            async with asyncio.timeout(timeout or self.timeout):
                item = await self._frames.next()
        except ConnectionError:
            return None
        return item.payload if isinstance(item, Frame) else None

    async def call(self, payload: bytes) -> bytes | None:
        await self.send(payload)
        return await self.receive()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
                await self._writer.wait_closed()
            self._writer = None
