"""The store: one writer task doing group commits, plus reads, history and the change log.

Every write in the system goes through :meth:`Store.write`: a job (an async function of a
:class:`WriteTx`) runs inside the single writer's transaction, which writes resource
versions, their index rows and change-log entries together, and optionally a consumer's
cursor and rows of other tables (the MLLP inbox). Jobs queued while a commit is in progress
are committed together (group commit); a job's future resolves only after the commit is
durable, and in-process consumers are woken right after.

Keys and the change-log order. ``rid``, ``vid`` and ``seq`` are assigned by the store, not
by the database: each write transaction reads the highest stored keys once, while it holds
the writer's lock, and hands out the next ones in memory (``_plan.Keys``). The lock is the
single writer task in this process plus, against other processes, a transaction-scoped
advisory lock on PostgreSQL and ``BEGIN IMMEDIATE`` (SQLite's write lock) on SQLite. Holding
it from the key read to the commit means that transactions commit in the order they took
their keys, so ``seq`` order is commit order: a consumer reading ``seq > cursor`` never
skips an entry that commits late (no transaction with a lower ``seq`` can still be open).
A rolled-back transaction's keys are simply never written; the next transaction reads the
maxima again, so nothing is cached across transactions and there is nothing to repair.

Group commit: jobs queued while a commit runs share the next transaction; with
``group_commit_ms`` the writer also waits up to that long after the first job for more
(stopping early once as many jobs as in the previous group have arrived).

Urgent jobs (``write(job, urgent=True)``: alerts) skip the queue: they commit together, in a
group of their own, right after the transaction in progress, so an alert never waits behind
queued ingest or a gathering window.

Bulk jobs (``write(job, bulk=True)``: the device feeds' batches, which nobody waits on) commit
in groups of their own, taking turns with the other jobs: when both wait, a bulk group follows
each group of the others and the others' group follows each bulk group. So an MLLP sender
waiting for its ACK waits for the group in progress and its own, never for a device batch
that was queued beside it in the same transaction, and the bulk jobs are not starved.

After each commit the writer yields to the event loop once, so the consumers the commit woke
run before it starts on the next group.

``writer_process`` (SQLite on a file; off for a bare ``Store``, on in the node, whose
``VITALGATE_WRITER_PROCESS`` defaults to true): the writer's connection lives in a
child process (``writer_process.py``), so SQLite's work runs on another core than the event
loop's; the jobs, the groups and the order stay here, each flush is one request to the child,
and a group's commit is sent without waiting for it before the next group's jobs run
(``_pipeline_group``: at most two groups wait for their commit, results in commit order).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fhir_server.errors import StorageError

from . import schema as t
from ._flush import Indexer
from ._plan import Members, prepare, remember_sets
from .checkpoint import WalCheckpointer
from .notify import ChangeNotifier
from .tx import WriteTx
from .types import Buffered, Change, Method, PendingWrite, Prepared, StoredVersion, Written
from .writer_process import WriterGone, WriterProcess

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[WriteTx], Awaitable[T]]
_PG_WRITE_LOCK = 0x56697461  # "Vita"


def _default_indexer() -> Indexer:
    from fhir_server.search.extract import extract_index

    return extract_index


class Store:
    """Async FHIR storage over SQLite or PostgreSQL. ``start()`` before use, ``close()`` after."""

    def __init__(self, engine: AsyncEngine, indexer: Indexer | None = None, *, max_group: int = 512,
                 group_commit_ms: float = 0.0, checkpoint_every_s: float | None = 0.25,
                 writer_process: bool = False):
        self.engine = engine
        self.indexer = indexer or _default_indexer()
        self.max_group = max_group
        self.group_window = max(0.0, group_commit_ms) / 1000.0
        self._last_group = 1
        self.notifier = ChangeNotifier()
        self._queue: asyncio.Queue[tuple[Job[Any], asyncio.Future[Any]] | None] = asyncio.Queue()
        self._urgent: deque[tuple[Job[Any], asyncio.Future[Any]]] = deque()
        self._held: deque[tuple[Job[Any], asyncio.Future[Any]]] = deque()  # taken, then passed by urgent jobs
        self._bulk: deque[tuple[Job[Any], asyncio.Future[Any]]] = deque()
        self._bulk_turn = False  # a group of the other jobs committed since the last bulk group
        self._idle = False  # the writer waits for a first job
        # writer process: the groups whose commit is sent and not yet answered, oldest first;
        # and the jobs of a group whose commit failed, to be committed each alone
        self._inflight: deque[asyncio.Task[None]] = deque()
        self._alone: deque[tuple[Job[Any], asyncio.Future[Any]]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._wconn: AsyncConnection | None = None
        self.is_postgres = engine.dialect.name == "postgresql"
        self.commits = 0
        # the series_member sets committed by this store (each written once: _plan.Members)
        self._series_sets: set[str] = set()
        path = engine.url.database if engine.dialect.name == "sqlite" else None
        on_file = bool(path and path != ":memory:" and not engine.url.query.get("uri"))
        self.checkpointer = (WalCheckpointer(path, every_s=checkpoint_every_s)
                             if on_file and path and checkpoint_every_s is not None else None)
        # a database in memory is the process's own: only a file can be shared with a child
        self._remote_path = path if writer_process and on_file else None
        self._remote: WriterProcess | None = None

    @property
    def writer_process(self) -> bool:
        """Whether the writer's connection is in a child process (``writer_process.py``)."""
        return self._remote_path is not None

    async def start(self) -> None:
        self.notifier.seq = await self.last_seq()
        if self._remote_path is not None and self._remote is None:
            self._remote = WriterProcess(self._remote_path)
            await self._remote.start()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="vitalgate-writer")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        while self._inflight:  # commits already sent: their callers get their answer
            with contextlib.suppress(BaseException):
                await self._inflight.popleft()
        if self._remote is not None:
            remote, self._remote = self._remote, None
            await remote.close()
        if self.checkpointer is not None:
            await self.checkpointer.close()
        if self._wconn is not None:
            conn, self._wconn = self._wconn, None
            await conn.close()
        await self.engine.dispose()

    # -- writes ---------------------------------------------------------------------------
    async def write(self, job: Job[T], *, urgent: bool = False, bulk: bool = False) -> T:
        """Run ``job`` in the writer's transaction; return its result once committed.

        ``urgent``: commit before the jobs already queued, in a group of urgent jobs only.
        ``bulk``: in a group of bulk jobs only, taking turns with the other jobs."""
        if self._writer is None:
            raise StorageError("store not started")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if urgent or bulk:
            (self._urgent if urgent else self._bulk).append((job, fut))
            self._queue.put_nowait(None)  # wakes an idle writer; skipped otherwise
        else:
            await self._queue.put((job, fut))
        return await fut

    def writer_starting(self) -> bool:
        """Whether a job waits for a writer process that is about to wake up to take it. A
        producer that maps many jobs in one turn of the event loop (the MLLP listener when
        several frames arrive together) yields once when this is true, so the child commits
        what is queued on the other core while the rest are mapped, instead of after them all.
        Always false with the writer in a thread: there the two take turns on the GIL, and
        smaller groups only cost more commits."""
        return self._remote_path is not None and self._idle and not self._queue.empty()

    def prepare(self, type_: str, id_: str, resource: dict[str, Any], *,
                indexer: Indexer | None = None) -> Prepared | None:
        """Serialise and index ``resource`` now, outside the writer (``tx.put(..., prepared=)``):
        the writer's transaction is the one serial step, so a caller that maps many resources
        (the MLLP ingest) does this work while another group commits. ``resource`` must not
        change afterwards. None for a resource whose ``meta`` holds a version (done at flush
        time). ``indexer``: one that returns exactly the store's rows, faster for what the
        caller writes (the device feeds memoise the rows a series repeats)."""
        return prepare(type_, id_, resource, indexer or self.indexer)

    async def put(self, type_: str, id_: str, resource: dict[str, Any], *,
                  method: Method = "PUT", if_match: int | None = None) -> Written:
        async def job(tx: WriteTx) -> Written:
            w = tx.put(type_, id_, resource, method=method, if_match=if_match)
            await tx.flush()
            return w.written()

        return await self.write(job)

    async def _write_loop(self) -> None:
        while True:
            alone = False
            if self._alone:  # a pipelined group's jobs, after its commit failed: each alone
                group, alone = [self._alone.popleft()], True
            elif self._urgent:
                group = list(self._urgent)
                self._urgent.clear()
            elif self._bulk and (self._bulk_turn or (self._queue.empty() and not self._held)):
                group = [self._bulk.popleft() for _ in range(min(len(self._bulk), self.max_group))]
                self._bulk_turn = False
            else:
                first: tuple[Job[Any], asyncio.Future[Any]] | None
                if self._held:
                    first = self._held.popleft()
                else:
                    self._idle = True
                    try:
                        first = await self._queue.get()
                    finally:
                        self._idle = False
                if first is None:
                    continue
                group = [first]
                await self._gather(group)
                if self._urgent:  # came while gathering: they go first, this group right after
                    self._held.extendleft(reversed(group))
                    continue
                self._last_group = len(group)
                self._bulk_turn = True
            try:
                if self._remote_path is not None:
                    await self._pipeline_group(group, alone)
                else:
                    await self._commit_group(group)
                    if self.checkpointer is not None:
                        self.checkpointer.after_commit()
            except Exception:  # never let the writer die: fail the group's jobs instead
                log.exception("writer failed a group of %d jobs", len(group))
                _fail(group, StorageError("write failed"))
            # The commit woke this process's consumers (subscription matcher, alerting): let them run
            # before the next group's jobs, which would otherwise hold this turn of the loop
            # (one-subscriber notification p50 ~1.6-2.1 -> 0.7-1.0 ms at 1,000 Obs/s under load)
            await asyncio.sleep(0)

    async def _gather(self, group: list[tuple[Job[Any], asyncio.Future[Any]]]) -> None:
        """Add queued jobs to ``group``; within the window, wait for as many as last time."""
        deadline = time.monotonic() + self.group_window
        while len(group) < self.max_group and not self._urgent:
            if self._held:
                group.append(self._held.popleft())
                continue
            if not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None:
                    group.append(item)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or len(group) >= self._last_group:
                return
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                return
            if item is not None:
                group.append(item)

    async def _pipeline_group(self, group: list[tuple[Job[Any], asyncio.Future[Any]]], alone: bool) -> None:
        """With a writer process: run the group's jobs, send its commit, and return without
        waiting for it (``_finish`` does), so the child commits this group while the next
        one's jobs run; at most two groups wait for their commit. Results resolve in commit
        order. A job that fails here fails the group as in ``_commit_group``: each of its
        jobs is then committed alone, so only the failing one fails."""
        remote = await self._writer_remote()
        tx = WriteTx(None, self.indexer, Members(self._series_sets), remote=remote)
        try:
            results = [None if fut.cancelled() else await job(tx) for job, fut in group]
            committed = tx.start_commit()
        except Exception as exc:  # noqa: BLE001 - handed to the caller, or retried alone
            if remote.alive:  # the transaction is still open in the child: end it in its turn
                with contextlib.suppress(Exception):
                    await remote.rollback()
            if alone or len(group) == 1:
                _fail(group, _translate(exc))
            else:
                self._alone.extend(group)
            return
        prev = self._inflight[-1] if self._inflight else None
        self._inflight.append(asyncio.create_task(self._finish(group, tx, results, committed, prev, alone)))
        while self._inflight and (len(self._inflight) > 2 or self._inflight[0].done()):
            with contextlib.suppress(Exception):
                await self._inflight.popleft()

    async def _finish(self, group: list[tuple[Job[Any], asyncio.Future[Any]]], tx: WriteTx, results: list[Any],
                      committed: Awaitable[None], prev: asyncio.Task[None] | None, alone: bool) -> None:
        if prev is not None:  # the earlier group's results and notifications go first
            with contextlib.suppress(BaseException):
                await asyncio.shield(prev)
        try:
            await committed
        except Exception as exc:  # noqa: BLE001 - the child rolled it back, or died
            # a child that died may have committed before it could answer: no retry then
            # (an MLLP sender resends and gets its duplicate answer; a REST client sees a 500)
            if alone or len(group) == 1 or isinstance(exc, WriterGone):
                _fail(group, _translate(exc))
            else:
                self._alone.extend(group)
                self._queue.put_nowait(None)  # wakes an idle writer
            return
        self._committed(tx)
        self._resolve(group, results, tx.max_seq, tx.flushed)
        if self.checkpointer is not None:
            self.checkpointer.after_commit()

    async def _commit_group(self, group: list[tuple[Job[Any], asyncio.Future[Any]]]) -> None:
        if len(group) > 1:
            try:
                results, max_seq, flushed = await self._run(group)
            except Exception:
                results = None  # one job failed: retry each alone so only that one fails
            if results is not None:
                self._resolve(group, results, max_seq, flushed)
                return
        for item in group:
            try:
                results, max_seq, flushed = await self._run([item])
                self._resolve([item], results, max_seq, flushed)
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                if not item[1].done():
                    item[1].set_exception(_translate(exc))

    async def _run(self, group: list[tuple[Job[Any], asyncio.Future[Any]]]
                   ) -> tuple[list[Any], int, list[PendingWrite]]:
        conn = await self._writer_conn()
        try:
            if self.is_postgres:
                await conn.exec_driver_sql("SELECT pg_advisory_xact_lock($1)", (_PG_WRITE_LOCK,))
            tx = WriteTx(conn, self.indexer, Members(self._series_sets))
            results: list[Any] = []
            for job, fut in group:
                if fut.cancelled():
                    results.append(None)
                    continue
                results.append(await job(tx))
            await tx.commit()
        except BaseException:
            # closing rolls back (SQLAlchemy's transaction and, by the pool's reset, the raw one)
            # and a broken connection is not reused: the next group checks out a fresh one
            self._wconn = None
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close())
            raise
        self._committed(tx)
        return results, tx.max_seq, tx.flushed

    def _committed(self, tx: WriteTx) -> None:
        self.commits += 1
        remember_sets(self._series_sets, tx.members.fresh)

    async def _writer_remote(self) -> WriterProcess:
        """The child, started again if it died (its transaction died with it)."""
        if self._remote is not None and not self._remote.alive:
            log.error("the SQLite writer process exited; starting another")
            dead, self._remote = self._remote, None
            await dead.close()
        if self._remote is None:
            assert self._remote_path is not None
            self._remote = WriterProcess(self._remote_path)
            await self._remote.start()
        return self._remote

    async def _writer_conn(self) -> AsyncConnection:
        """The writer's connection, kept between groups: a checkout from the pool and its reset
        (a rollback) cost a thread hop each on SQLite, a round trip on PostgreSQL, per commit."""
        if self._wconn is None:
            conn = await self.engine.connect()
            if self.is_postgres:
                # Plan each statement with its parameters: a generic plan cached while a table
                # was new (no statistics) keeps its choice as the table grows. The lookup by
                # (type, id) then filtered every row of the type through ix_resource_type_updated
                # (~8 ms a group at 20,000 Observations, growing) until autovacuum analysed it.
                await conn.exec_driver_sql("SET plan_cache_mode = force_custom_plan")
                await conn.commit()
            self._wconn = conn
        return self._wconn

    def _resolve(self, group: list[tuple[Job[Any], asyncio.Future[Any]]], results: list[Any], max_seq: int,
                 flushed: list[PendingWrite]) -> None:
        for (_, fut), res in zip(group, results, strict=True):
            if not fut.done():
                fut.set_result(res)
        if max_seq:
            # the committed entries go to in-process consumers in memory: no read-back of what we just wrote
            self.notifier.notify(max_seq, [(_change(w), w.result.body, _source(w)) for w in flushed
                                           if w.result is not None and not w.skipped])

    # -- reads ----------------------------------------------------------------------------
    async def read(self, type_: str, id_: str) -> StoredVersion | None:
        """Current version (possibly a deletion marker) or None. https://hl7.org/fhir/R4B/http.html#read"""
        r, v = t.resource.c, t.resource_version.c
        stmt = (
            select(r.version, r.last_updated, r.deleted, v.body)
            .join(t.resource_version, v.vid == r.vid)
            .where(r.type == type_, r.id == id_)
        )
        row = (await self.fetch(stmt)).first()
        return None if row is None else StoredVersion(type_, id_, row[0], row[1], bool(row[2]), row[3])

    async def vread(self, type_: str, id_: str, version: int) -> StoredVersion | None:
        """https://hl7.org/fhir/R4B/http.html#vread"""
        r, v = t.resource.c, t.resource_version.c
        stmt = (
            select(v.version, v.last_updated, v.deleted, v.body)
            .join(t.resource, r.rid == v.rid)
            .where(r.type == type_, r.id == id_, v.version == version)
        )
        row = (await self.fetch(stmt)).first()
        return None if row is None else StoredVersion(type_, id_, row[0], row[1], bool(row[2]), row[3])

    async def fetch(self, stmt: Select[Any]) -> Any:
        """Run a read-only statement (search, history) and return its buffered result."""
        try:
            async with self.engine.connect() as conn:
                return Buffered((await conn.execute(stmt)).all())
        except SQLAlchemyError as exc:
            raise _translate(exc) from exc

    async def history(
        self, type_: str | None = None, id_: str | None = None, *, since: int | None = None,
        count: int = 50, offset: int = 0, max_seq: int | None = None,
    ) -> tuple[list[StoredVersion], int]:
        """Versions newest first, and the total. https://hl7.org/fhir/R4B/http.html#history"""
        c, v = t.change_log.c, t.resource_version.c
        where = []
        if type_ is not None:
            where.append(c.type == type_)
        if id_ is not None:
            where.append(c.id == id_)
        if since is not None:
            where.append(c.ts >= since)
        if max_seq is not None:
            where.append(c.seq <= max_seq)
        stmt = (
            select(c.type, c.id, v.version, v.last_updated, v.deleted, v.body, v.method)
            .join(t.resource_version, v.vid == c.vid)
            .where(*where).order_by(c.seq.desc()).limit(count).offset(offset)
        )
        rows = await self.fetch(stmt)
        total = (await self.fetch(select(func.count()).select_from(t.change_log).where(*where))).scalar()
        out = [StoredVersion(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]
        return out, int(total or 0)

    # -- change log -----------------------------------------------------------------------
    async def last_seq(self) -> int:
        return int((await self.fetch(select(func.max(t.change_log.c.seq)))).scalar() or 0)

    async def changes(self, after: int, limit: int = 1000, types: Sequence[str] | None = None) -> list[Change]:
        """Change-log entries with ``seq > after``, oldest first."""
        c = t.change_log.c
        stmt = select(c.seq, c.type, c.id, c.version, c.op, c.ts, c.vid).where(c.seq > after)
        if types:
            stmt = stmt.where(c.type.in_(list(types)))
        rows = await self.fetch(stmt.order_by(c.seq).limit(limit))
        return [Change(*r) for r in rows]

    async def bodies(self, vids: Sequence[int]) -> dict[int, bytes]:
        v = t.resource_version.c
        out: dict[int, bytes] = {}
        for i in range(0, len(vids), 500):
            rows = await self.fetch(select(v.vid, v.body).where(v.vid.in_(list(vids[i : i + 500]))))
            out.update({vid: body for vid, body in rows})
        return out

    async def cursor(self, name: str) -> int:
        c = t.consumer_cursor.c
        return int((await self.fetch(select(c.seq).where(c.name == name))).scalar() or 0)

    async def advance_cursor(self, name: str, seq: int) -> None:
        async def job(tx: WriteTx) -> None:
            tx.advance_cursor(name, seq)

        await self.write(job)

    async def wait_for_change(self, after: int, timeout: float) -> int:
        """Wait until a change past ``after`` commits in this process (or ``timeout``)."""
        return await self.notifier.wait(after, timeout)

    async def conn(self) -> AsyncConnection:
        return await self.engine.connect()


def _fail(group: list[tuple[Job[Any], asyncio.Future[Any]]], exc: BaseException) -> None:
    for _, fut in group:
        if not fut.done():
            fut.set_exception(exc)


def _change(w: PendingWrite) -> Change:
    r = w.written()
    return Change(r.seq, r.type, r.id, r.version, "delete" if r.deleted else ("create" if r.created else "update"),
                  r.last_updated, r.vid)


def _source(w: PendingWrite) -> dict[str, Any] | None:
    """The dict ``w``'s stored body was made from, when it names the same resource (a create
    whose dict carries another id or none is left to the body)."""
    res = w.resource
    if res is None or res.get("id") != w.id or res.get("resourceType") != w.type:
        return None
    return res


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, SQLAlchemyError):
        return StorageError(f"database error: {type(exc.__cause__ or exc).__name__}")
    if isinstance(exc, sqlite3.Error):  # the SQLite flush runs on the driver's raw connection
        return StorageError(f"database error: {type(exc).__name__}")
    return exc
