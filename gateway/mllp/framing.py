"""MLLP framing: bounded frames as bytes off an ``asyncio.StreamReader`` (no parsing here).

A frame is ``0x0B payload 0x1C 0x0D`` (HL7 v2 MLLP release 2, the "minimal lower layer
protocol"). The reader uses only the public ``readuntil``/``read`` API and
``LimitOverrunError``, so it never touches the stream's private buffer:

- bytes outside a frame (before a VT, or a frame whose VT went missing) are counted, logged
  and skipped;
- a VT inside a frame restarts the frame: what came before it had lost its end;
- a frame longer than ``max_frame`` yields :class:`Oversized` holding the first bytes read
  (kept as a dead letter by the caller, who then closes the connection);
- end of stream mid-frame discards the partial frame (it was never acknowledged, so the
  sender still owns it) and yields ``None`` like a clean end of stream.

Timeouts (idle or half-open peers) belong to the caller: wrap :meth:`FrameReader.next` in
``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

VT = b"\x0b"
FS_CR = b"\x1c\x0d"
DEFAULT_MAX_FRAME = 1 << 20


def frame(payload: bytes) -> bytes:
    """Wrap ``payload`` in an MLLP frame."""
    return VT + payload + FS_CR


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete frame's payload (without VT and FS CR)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Oversized:
    """A frame that passed ``max_frame``: ``head`` holds its first bytes (at most ``max_frame``)."""

    head: bytes
    size_seen: int


class FrameReader:
    """Reads frames one by one from ``reader``; ``skipped`` counts bytes found outside frames."""

    def __init__(self, reader: asyncio.StreamReader, *, max_frame: int = DEFAULT_MAX_FRAME,
                 peer: str = "") -> None:
        self.reader = reader
        self.max_frame = max_frame
        self.peer = peer
        self.skipped = 0

    async def next(self) -> Frame | Oversized | None:
        """The next frame, an :class:`Oversized` marker, or ``None`` at end of stream."""
        if not await self._skip_to_start():
            return None
        return await self._read_body()

    async def _skip_to_start(self) -> bool:
        """Consume bytes up to and including the next VT; False at end of stream."""
        while True:
            try:
                chunk = await self.reader.readuntil(VT)
            except asyncio.IncompleteReadError as exc:
                self._skip(len(exc.partial), "before end of stream")
                return False
            except asyncio.LimitOverrunError as exc:
                self._skip(len(await self.reader.read(max(exc.consumed, 1))), "outside a frame")
                continue
            self._skip(len(chunk) - 1, "before a frame start")
            return True

    async def _read_body(self) -> Frame | Oversized | None:
        parts: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = await self.reader.readuntil(FS_CR)
                ended = True
            except asyncio.IncompleteReadError as exc:
                self._skip(size + len(exc.partial), "in a frame cut by end of stream")
                return None
            except asyncio.LimitOverrunError as exc:
                chunk = await self.reader.read(max(exc.consumed, 1))
                ended = False
            body = chunk[:-2] if ended else chunk
            if VT in body:  # a new frame started: the bytes before it lost their end
                cut = body.rindex(VT)
                self._skip(size + cut, "in a frame without an end")
                parts, size = [], 0
                body = body[cut + 1 :]
            parts.append(body)
            size += len(body)
            if size > self.max_frame:
                return Oversized(b"".join(parts)[: self.max_frame], size)
            if ended:
                return Frame(b"".join(parts))

    def _skip(self, count: int, where: str) -> None:
        if count > 0:
            self.skipped += count
            log.warning("mllp %s: skipped %d bytes %s", self.peer or "-", count, where)

