"""SQLite WAL checkpoints off the writer's critical path.

With ``wal_autocheckpoint`` alone, the commit that pushes the WAL past the threshold copies the
whole log back into the database file, in the writer's thread, before its group resolves: at
1,000 Obs/s that was a 20-65 ms commit about every 0.85 s (10,000 pages), holding that group's
ACKs and every urgent write (an alert) queued behind it (docs/alerting.md section 8, "Checkpoints").

Here a separate connection runs ``PRAGMA wal_checkpoint(PASSIVE)`` in a worker thread a short
while after commits (SQLite runs it without the GIL, concurrently with the writer: a passive
checkpoint never takes the write lock). The log is reused from its start (the "restart" that
keeps it small) only by a write transaction that finds every frame copied, so one pass is chased
by a few short ones that copy what commits appended meanwhile. ``wal_autocheckpoint`` stays on the
writer's connection as the backstop: when restarts keep missing, the writer checkpoints at the
threshold as before, but only the frames the background pass had not copied yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time

log = logging.getLogger(__name__)


class WalCheckpointer:
    """``after_commit()`` from the writer (event loop); ``await close()`` before the engine goes."""

    def __init__(self, path: str, *, every_s: float = 0.25, passes: int = 4):
        self.path, self.every_s, self.passes = path, every_s, passes
        self.checkpoints = 0  # passes run, for tests and metrics
        self._db: sqlite3.Connection | None = None
        self._running: asyncio.Future[None] | None = None
        self._last = time.monotonic()

    def after_commit(self) -> None:
        """Start a checkpoint in a worker thread if none runs and ``every_s`` has passed."""
        if self._running is not None or time.monotonic() - self._last < self.every_s:
            return
        self._running = asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
        self._running.add_done_callback(self._done)

    def _done(self, fut: asyncio.Future[None]) -> None:
        self._running, self._last = None, time.monotonic()
        if not fut.cancelled() and fut.exception() is not None:  # the backstop still checkpoints
            log.warning("background WAL checkpoint failed: %s", fut.exception())

    def _checkpoint(self) -> None:
        if self._db is None:
            # check_same_thread off: the executor may run each call on another thread, never two at once
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA synchronous=FULL")  # the database file is synced as the writer's WAL is
        backfilled = -1
        for _ in range(self.passes):
            busy, frames, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            # copied < backfilled: the log restarted in between; copied == backfilled: nothing new came
            if busy or frames < 0 or copied == backfilled:
                return
            backfilled = copied

    async def close(self) -> None:
        running = self._running
        if running is not None:
            with contextlib.suppress(Exception):
                await running
        db, self._db = self._db, None
        if db is not None:
            db.close()
