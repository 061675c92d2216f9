"""In-process wake-up for change-log consumers: no polling delay after a commit."""

from __future__ import annotations

import asyncio
import contextlib


class ChangeNotifier:
    """Tracks the highest committed sequence number and wakes waiters when it grows."""

    def __init__(self) -> None:
        self.seq = 0
        self._event = asyncio.Event()

    def notify(self, seq: int) -> None:
        if seq <= self.seq:
            return
        self.seq = seq
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, after: int, timeout: float) -> int:
        """Return the latest seq once it passes ``after``, or when ``timeout`` expires."""
        if self.seq > after:
            return self.seq
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        return self.seq
