"""``WriteTx``: what a write job sees inside the writer's transaction.

Writes are queued and flushed in batches (at the end of the group commit, or before any
read inside the transaction, so reads always see earlier writes of the same transaction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema as t
from ._flush import Indexer, flush
from .types import Buffered, Method, PendingWrite, now_us

if TYPE_CHECKING:
    from sqlalchemy.engine import Result


class WriteTx:
    """A unit of work bound to one database transaction of the single writer."""

    def __init__(self, conn: AsyncConnection, indexer: Indexer) -> None:
        self.conn = conn
        self._indexer = indexer
        self._writes: list[PendingWrite] = []
        self._extra: list[tuple[Table, list[dict[str, Any]]]] = []
        self._cursors: dict[str, int] = {}
        self.max_seq = 0

    def put(
        self,
        type_: str,
        id_: str,
        resource: dict[str, Any],
        *,
        method: Method = "PUT",
        if_match: int | None = None,
        must_not_exist: bool = False,
    ) -> PendingWrite:
        """Create or update ``type_/id_`` (``resource`` without id/meta is fine)."""
        w = PendingWrite(type_, id_, resource, method, if_match, must_not_exist)
        self._writes.append(w)
        return w

    def delete(self, type_: str, id_: str, *, if_match: int | None = None) -> PendingWrite:
        w = PendingWrite(type_, id_, None, "DELETE", if_match)
        self._writes.append(w)
        return w

    def insert(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows of a table another package owns (e.g. the MLLP inbox) in this transaction."""
        self._extra.append((table, [dict(r) for r in rows]))

    def advance_cursor(self, name: str, seq: int) -> None:
        """Commit consumer ``name``'s position together with this transaction's effects."""
        self._cursors[name] = max(seq, self._cursors.get(name, 0))

    async def execute(self, stmt: Select[Any]) -> Result[Any]:
        """Run a read inside the transaction, after flushing queued writes."""
        await self.flush()
        return await self.conn.execute(stmt)

    async def fetch(self, stmt: Select[Any]) -> Buffered:
        """Like ``Store.fetch`` but inside this transaction."""
        return Buffered((await self.execute(stmt)).all())

    async def flush(self) -> None:
        writes, self._writes = self._writes, []
        await flush(self.conn, writes, self._indexer, now_us())
        for w in writes:
            if w.result is not None:
                self.max_seq = max(self.max_seq, w.result.seq)
        extra, self._extra = self._extra, []
        for table, rows in extra:
            if rows:
                await self.conn.execute(insert(table), rows)
        if self._cursors:
            await self._save_cursors()

    async def _save_cursors(self) -> None:
        cursors, self._cursors = self._cursors, {}
        dialect = self.conn.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
        now = now_us()
        for name, seq in cursors.items():
            stmt = upsert(t.consumer_cursor).values(name=name, seq=seq, updated=now)
            stmt = stmt.on_conflict_do_update(
                index_elements=["name"], set_={"seq": stmt.excluded.seq, "updated": now}
            )
            await self.conn.execute(stmt)
