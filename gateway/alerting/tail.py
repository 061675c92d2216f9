"""The alerting consumer's read of new change-log entries with their bodies, in one statement.

``Store.changes`` plus ``Store.bodies`` is two reads, each a pool checkout and several hand-offs
between the event loop and the driver thread that wait behind ingest work on the loop (about 5 ms
p50 and 22 ms p90 each under 1,000 Observations/s here).  This reader keeps one connection and
runs one statement with the driver directly (aiosqlite or asyncpg; a plain SELECT outside any
transaction sees every commit).  On any failure it drops the connection and reads through the
store's API for that batch, so correctness never depends on the fast path.

Faster still, ``recent`` takes what this process has just committed from the store's notifier,
in memory, whenever it holds an unbroken run of entries after the cursor, with each
Observation as the dict it was written from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from fhir_server.storage import Change, Store

log = logging.getLogger(__name__)
Body = bytes | dict[str, Any]  # the stored JSON, or (from memory) the Observation it was written from
_SQL = ("SELECT c.seq, c.type, c.id, c.version, c.op, c.ts, c.vid, v.body FROM change_log c "
        "JOIN resource_version v ON v.vid = c.vid WHERE c.seq > {after} AND c.type IN ({types}) "
        "ORDER BY c.seq LIMIT {limit}")


class ChangeReader:
    """``await read(after, limit)`` → (changes, {vid: body}); ``await close()`` at the end."""

    def __init__(self, store: Store, types: Sequence[str]):
        self.store, self.types = store, tuple(types)
        self._conn: AsyncConnection | None = None
        self._raw: Any = None

    def recent(self, after: int, limit: int) -> tuple[list[Change], dict[int, Body], int] | None:
        """What this process just committed after ``after``, from the store's notifier (no read):
        our types' entries, their bodies, and the last seq covered (any type); None when memory
        cannot answer for an unbroken run after ``after`` (then ``read``).  An Observation's body
        is the dict it was written from when the writer had one (parsing it again was ~30 % of
        the consumer's CPU); other types' are always the stored bytes (the engine's own
        DetectedIssue dicts are its objects, which it may change after the write)."""
        held = self.store.notifier.recent(after, limit)
        if held is None:
            return None
        mine = [e for e in held if e[0].type in self.types]
        bodies: dict[int, Body] = {}
        for c, body, res in mine:
            if res is not None and c.type == "Observation":
                bodies[c.vid] = res
            elif body is not None:
                bodies[c.vid] = body
        return [c for c, _, _ in mine], bodies, held[-1][0].seq if held else after

    async def read(self, after: int, limit: int) -> tuple[list[Change], dict[int, bytes]]:
        try:
            rows = await self._read_raw(after, limit)
        except Exception:  # noqa: BLE001 - a broken kept connection: reopen next time, read the slow way now
            log.warning("alerting change reader lost its connection; reconnecting", exc_info=True)
            await self.close()
            changes = await self.store.changes(after, limit=limit, types=self.types)
            return changes, await self.store.bodies([c.vid for c in changes])
        return [Change(*r[:7]) for r in rows], {r[6]: bytes(r[7]) for r in rows if r[7] is not None}

    async def _read_raw(self, after: int, limit: int) -> list[Any]:
        dialect = self.store.engine.dialect.name
        if self._raw is None:
            self._conn = await self.store.engine.connect()
            self._raw = (await self._conn.get_raw_connection()).driver_connection
        if dialect == "postgresql":
            marks = ", ".join(f"${i}" for i in range(3, 3 + len(self.types)))
            sql = _SQL.format(after="$1", limit="$2", types=marks)
            return list(await self._raw.fetch(sql, after, limit, *self.types))
        if dialect != "sqlite":
            raise RuntimeError(f"no fast path for {dialect}")
        sql = _SQL.format(after="?", limit="?", types=", ".join("?" * len(self.types)))
        cursor = await self._raw.execute(sql, (after, *self.types, limit))  # placeholders in text order
        try:
            return list(await cursor.fetchall())
        finally:
            await cursor.close()

    async def close(self) -> None:
        conn, self._conn, self._raw = self._conn, None, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001 - already broken
                log.debug("closing the alerting change reader failed", exc_info=True)
