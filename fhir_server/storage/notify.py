"""In-process wake-up for change-log consumers, and the entries just committed, in memory.

After each commit the store calls :meth:`ChangeNotifier.notify` with the transaction's
change-log entries, their stored bodies and, where the writer had one, the resource dict the
body was made from (so an in-process consumer need not parse the JSON it was just handed; the
dict shares the body's content except ``meta.versionId``/``lastUpdated``, and its decimals may
be ``Decimal``; it must not be modified). Consumers are woken at once and can take those
entries from memory (:meth:`ChangeNotifier.recent`) instead of reading them back from the
database: under ingest load that read is a thread or network hop that waits behind the
writer (several ms). The memory only ever answers with an unbroken run of ``seq`` values
that starts right after the caller's cursor, so a consumer can never skip or repeat an
entry: when another process wrote in between (a gap), when the caller is older than what
is held, or when the head was learned otherwise (start-up), it answers ``None`` and the
caller reads the log as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from .types import Change

# the entry, the version's stored body (None: not kept) and the resource it was written from
# (None: read the body)
Entry = tuple[Change, bytes | None, dict[str, Any] | None]


class ChangeNotifier:
    """Tracks the highest committed sequence number and wakes waiters when it grows."""

    def __init__(self, keep: int = 8192) -> None:
        self.seq = 0
        self._event = asyncio.Event()
        self._keep = keep
        self._recent: list[Entry] = []  # consecutive seq values, oldest first
        self._first = 0  # seq of _recent[0]

    def notify(self, seq: int, entries: Sequence[Entry] = ()) -> None:
        if entries:
            self._remember(entries)
        if seq <= self.seq:
            return
        self.seq = seq
        event, self._event = self._event, asyncio.Event()
        event.set()

    def _remember(self, entries: Sequence[Entry]) -> None:
        first = entries[0][0].seq
        if not self._recent or first != self._first + len(self._recent):
            self._recent, self._first = [], first  # a gap (another writer) or the first commit: a new run
        self._recent.extend(entries)
        extra = len(self._recent) - self._keep
        if extra > self._keep // 4:  # trim in steps, not per commit
            del self._recent[:extra]
            self._first += extra

    def recent(self, after: int, limit: int) -> list[Entry] | None:
        """Up to ``limit`` entries with ``seq > after``, oldest first, straight from memory.

        ``[]``: nothing committed in this process after ``after``. ``None``: memory cannot
        answer (``after`` is older than what is kept, or entries exist that it never held);
        read the change log instead.
        """
        held = len(self._recent)
        if not held:
            return None if self.seq > after else []
        i = after + 1 - self._first
        if i < 0 or i > held:
            return None
        if i == held:
            return None if self.seq > after else []
        return self._recent[i:i + limit]

    async def wait(self, after: int, timeout: float) -> int:
        """Return the latest seq once it passes ``after``, or when ``timeout`` expires."""
        if self.seq > after:
            return self.seq
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._event.wait()
        return self.seq
