"""``WriteTx``: what a write job sees inside the writer's transaction.

Writes are queued and flushed in batches (at the end of the group commit, or before any
read inside the transaction, so reads always see earlier writes of the same transaction).
Primary keys (``rid``, ``vid``, ``seq``) are read once per transaction, at its first flush,
under the writer's lock, and handed out in memory after that (see ``_flush``).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir_server.errors import PreconditionFailed

from ._flush import Guard, Indexer, Keys, Members, flush_core, flush_sqlite
from .types import Buffered, Method, PendingWrite, Prepared, now_us

if TYPE_CHECKING:
    from sqlalchemy.engine import Result

    from .writer_process import WriterProcess

_QMARK = re.compile(r"\?")
_GUARDS_A_STATEMENT = 200


class WriteTx:
    """A unit of work bound to one database transaction of the single writer: on ``conn``, or
    (SQLite) on the connection of the ``remote`` writer process (``writer_process.py``)."""

    def __init__(self, conn: AsyncConnection | None, indexer: Indexer, members: Members | None = None,
                 *, remote: WriterProcess | None = None) -> None:
        self.conn = conn
        self._remote = remote
        self.members = members or Members()  # the series_member sets written (store.py adds them after the commit)
        self._indexer = indexer
        self._writes: list[PendingWrite] = []
        self._extra: list[tuple[Table, list[dict[str, Any]]]] = []
        self._cursors: dict[str, int] = {}
        self._guards: list[Guard] = []
        self._keys: Keys | None = None
        self._sqlite = remote is not None or (conn is not None and conn.dialect.name == "sqlite")
        self.max_seq = 0
        self.flushed: list[PendingWrite] = []  # in seq order; the store hands them to consumers after commit

    def put(
        self,
        type_: str,
        id_: str,
        resource: dict[str, Any],
        *,
        method: Method = "PUT",
        if_match: int | None = None,
        must_not_exist: bool = False,
        if_absent: bool = False,
        prepared: Prepared | None = None,
        minted: bool = False,
    ) -> PendingWrite:
        """Create or update ``type_/id_`` (``resource`` without id/meta is fine).

        ``if_absent``: write only when no live version exists, checked at flush time against
        the store and the earlier writes of this transaction; otherwise the write is dropped
        and marked ``skipped`` (an ORU's sparse Patient must not clobber what ADT wrote).
        ``prepared``: ``Store.prepare(type_, id_, resource)``, done before the transaction.
        ``minted``: ``id_`` comes from ``fhir_server.core.ids.new_id`` (a create): it is not
        looked up in the store (one query less a commit).
        """
        w = PendingWrite(type_, id_, resource, method, if_match, must_not_exist, if_absent=if_absent,
                         prepared=prepared, minted=minted)
        self._writes.append(w)
        return w

    def delete(self, type_: str, id_: str, *, if_match: int | None = None) -> PendingWrite:
        w = PendingWrite(type_, id_, None, "DELETE", if_match)
        self._writes.append(w)
        return w

    def insert(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows of a table another package owns (e.g. the MLLP inbox) in this transaction."""
        self._extra.append((table, [dict(r) for r in rows]))

    def expect_empty(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Fail the transaction with ``PreconditionFailed`` if ``sql`` returns a row.

        Checked by the next flush, before that flush's writes, in the same call (on SQLite the
        same thread hop or request to the writer process; no round trip of its own as a read
        through ``rows`` would be). A failed check fails the whole group; the store then runs
        each of its jobs alone, so only the job whose check fails raises. ``sql`` as in ``rows``.
        """
        self._guards.append((sql, tuple(params)))

    def advance_cursor(self, name: str, seq: int) -> None:
        """Commit consumer ``name``'s position together with this transaction's effects."""
        self._cursors[name] = max(seq, self._cursors.get(name, 0))

    async def execute(self, stmt: Select[Any]) -> Result[Any] | Buffered:
        """Run a read inside the transaction, after flushing queued writes."""
        await self.flush()
        if self._remote is not None:
            return Buffered(await self._remote.rows(*_sqlite_sql(stmt)))
        assert self.conn is not None
        result: Result[Any] = await self.conn.execute(stmt)
        return result

    async def fetch(self, stmt: Select[Any]) -> Buffered:
        """Like ``Store.fetch`` but inside this transaction."""
        return Buffered(list((await self.execute(stmt)).all()))

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of a raw statement inside the transaction (after the queued writes): a
        read, or a write of a table the store does not own (none for one without RETURNING);
        ``sql`` uses ``?`` placeholders (and no ``?`` in literals), ``params`` plain values.

        For per-group reads on the write path: no statement compiled (SQLAlchemy's compile
        of a statement built per call costs milliseconds here), and on SQLite one call in the
        driver's thread that first takes the write lock (as the flush does, so what is read
        stays true until the commit) instead of several thread hops.
        """
        await self.flush()
        if self._remote is not None:
            return await self._remote.rows(sql, params)
        assert self.conn is not None
        if not self._sqlite:
            result = await self.conn.exec_driver_sql(_numbered(sql), tuple(params))
            return [tuple(r) for r in result] if result.returns_rows else []
        rows: list[tuple[Any, ...]] = await _in_sqlite_thread(self.conn, _sqlite_rows, sql, list(params))
        return rows

    async def flush(self) -> None:
        """Write everything queued (resources, extra rows, cursors) into the transaction."""
        await self._flush(commit=False)

    async def commit(self) -> None:
        """The store's end of a group: the last flush and the commit. On SQLite both are one
        call in the driver's thread (the commit's fsync included), instead of a hop for the
        flush, one for the commit and one for the pool's reset."""
        if self._sqlite:
            await self._flush(commit=True)
        else:
            await self._flush(commit=False)
        if self.conn is not None and self.conn.in_transaction():  # a job ran SQLAlchemy statements, or PostgreSQL
            await self.conn.commit()

    def start_commit(self) -> Awaitable[None]:
        """With a writer process: send the last flush and the commit now and return what
        waits for the commit, so the store can go on to the next group's jobs meanwhile."""
        assert self._remote is not None
        return self._remote_flush(*self._take(), True)

    def _remote_flush(self, writes: list[PendingWrite], extra: list[tuple[Table, list[dict[str, Any]]]],
                      cursors: dict[str, int], guards: list[Guard], commit: bool) -> Awaitable[None]:
        """Sends the request now (not when awaited): requests go out in the order made."""
        assert self._remote is not None
        outcome = self._remote.start_flush(self._keys, writes, now_us(), [(table.name, rows) for table, rows in extra],
                                           cursors, commit, self.members, guards)

        async def done() -> None:
            self._keys, max_seq = await outcome
            self.max_seq = max(self.max_seq, max_seq)
            self.flushed.extend(writes)

        return done()

    def _take(self) -> tuple[list[PendingWrite], list[tuple[Table, list[dict[str, Any]]]], dict[str, int],
                             list[Guard]]:
        """What is queued (writes, extra rows, cursors, checks), leaving the queues empty."""
        writes, self._writes = self._writes, []
        extra, self._extra = self._extra, []
        cursors, self._cursors = self._cursors, {}
        guards, self._guards = self._guards, []
        return writes, extra, cursors, guards

    async def _flush(self, *, commit: bool) -> None:
        writes, extra, cursors, guards = self._take()
        if not (writes or extra or cursors or guards or commit):
            return
        if self._remote is not None:
            await self._remote_flush(writes, extra, cursors, guards, commit)
            return
        assert self.conn is not None
        args = (self._keys, writes, self._indexer, now_us(), extra, cursors)
        if self._sqlite:
            self._keys, max_seq = await _in_sqlite_thread(self.conn, flush_sqlite, *args, commit, self.members,
                                                          guards)
        else:
            await _check_pg(self.conn, guards)
            self._keys, max_seq = await flush_core(self.conn, *args, self.members)
        self.max_seq = max(self.max_seq, max_seq)
        self.flushed.extend(writes)


async def _check_pg(conn: AsyncConnection, guards: Sequence[Guard]) -> None:
    """PostgreSQL: a group's checks in one statement (a round trip each would cost more than the
    flush), ``EXISTS`` per check."""
    for i in range(0, len(guards), _GUARDS_A_STATEMENT):
        chunk = guards[i : i + _GUARDS_A_STATEMENT]
        sql = "SELECT " + " OR ".join(f"EXISTS ({g})" for g, _ in chunk)
        if (await conn.exec_driver_sql(_numbered(sql), tuple(p for _, ps in chunk for p in ps))).scalar():
            raise PreconditionFailed(f"one of {len(chunk)} checks found a row")


def _numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...``."""
    numbers = iter(range(1, sql.count("?") + 1))
    return _QMARK.sub(lambda _: f"${next(numbers)}", sql)


def _sqlite_sql(stmt: Select[Any]) -> tuple[str, list[Any]]:
    """``stmt`` as SQLite SQL with ``?`` placeholders and its parameters in order."""
    from sqlalchemy.dialects import sqlite

    compiled = stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True})
    params = compiled.params
    procs: Any = compiled._bind_processors  # e.g. a Boolean's True -> 1
    names = compiled.positiontup or []
    return compiled.string, [procs[n](params[n]) if n in procs else params[n] for n in names]


def _sqlite_rows(db: sqlite3.Connection, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    if not db.in_transaction:
        db.execute("BEGIN IMMEDIATE")
    return db.execute(sql, params).fetchall()


async def _in_sqlite_thread(conn: AsyncConnection, fn: Any, *args: Any) -> Any:
    """Call ``fn(sqlite3_connection, *args)`` in aiosqlite's worker thread, the only thread
    that may use that connection: one hop for a whole flush. SQLAlchemy's own aiosqlite
    adapter queues work on the same thread this way (``_execute`` is aiosqlite's queue)."""
    raw = await conn.get_raw_connection()
    aio = raw.driver_connection
    return await aio._execute(fn, aio._conn, *args)  # type: ignore[union-attr]
