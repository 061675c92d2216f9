"""SQLite's writer connection in a process of its own.

Why: with the writer's connection in a thread of the listener's process, the event loop
(parse, map, ACKs) and SQLite's thread (binding rows, ``executemany``, ``COMMIT``) take turns
on the GIL: each was busy about half the time at 5,000 Observations/s offered and their sum
was one core (docs/mllp-ingest-performance.md, ninth round). In a child process the flush
runs on the second core while the loop maps the next messages.

The child holds one ``sqlite3`` connection and runs, in the order they come, what the thread
ran before: ``_flush.flush_sqlite`` (lock, key read, lookup, plan, inserts, commit) and the
reads a write job makes inside its transaction. The parent sends each request as one pickled
frame over a socket pair; one task reads the answers, in the same order, on its event loop.
The store sends a group's commit and goes on to the next group without waiting for the
answer (``Store._pipeline_group``), so the child starts on the next transaction as soon as it
has committed; a commit that fails is rolled back by the child itself, since the next request
may already be the next transaction's. The child also keeps which ``series_member`` sets have
committed (``_plan.Members``), since it is the one that writes them. What crosses: the
writes' prepared rows as plain tuples (no resource dict unless the flush must serialise it)
and, back, each write's outcome.

The child ends when the parent closes its end or dies (it reads end-of-file), rolling back
a transaction in progress; an ACK is only ever sent after a reply says committed, so a
parent killed by SIGKILL loses nothing it acknowledged. The child ignores SIGINT: a Ctrl-C
in a terminal reaches the whole process group, and the parent decides when to stop.

The children are forked by a zygote: one small process a parent starts on first use
(``python -m fhir_server.storage.writer_zygote``), which imports what a child needs once
(~0.9 s) and then forks a child for each store in a few ms, handed its socket over
``SCM_RIGHTS``. Forking the parent itself would copy a process with threads (the loop's
executor, aiosqlite's) into the child; multiprocessing's spawn and fork server re-run the
parent's main module in every child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fhir_server.errors import StorageError

from ._plan import Keys, Members, remember_sets
from .types import PendingWrite, Prepared, Written

if TYPE_CHECKING:
    from ._flush import Guard

log = logging.getLogger(__name__)

_HEAD = struct.Struct("!Q")
_SOCKET_BUFFER = 4 << 20
# a write as it crosses: type, id, resource (None: delete; {} stands for a prepared one),
# method, if_match, must_not_exist, if_absent, minted, prepared
_Wire = tuple[str, str, dict[str, Any] | None, str, int | None, bool, bool, bool, Any]


class WriterGone(StorageError):
    """The child ended (or was killed): what it was doing is unknown, an open transaction lost."""


def _wire(w: PendingWrite) -> _Wire:
    # a prepared write's rows and JSON tail are all the flush reads of it. Plain tuples, not
    # the dataclasses: pickle takes ~25 us a slotted dataclass each way, ~1 us a tuple
    p = w.prepared
    resource = w.resource if p is None or w.resource is None else {}
    return (w.type, w.id, resource, w.method, w.if_match, w.must_not_exist, w.if_absent, w.minted,
            None if p is None else (p.tail, p.index, p.meta))


def _outcome(w: PendingWrite) -> tuple[tuple[Any, ...] | None, bool]:
    r = w.result
    return (None if r is None else (r.type, r.id, r.version, r.last_updated, r.seq, r.created, r.deleted,
                                    r.body, r.vid)), w.skipped


class WriterProcess:
    """The parent's end: ``await start()``, then requests from the store's writer.

    Requests are answered in the order they were sent, so a request may be sent before the
    reply to the previous one has come: the store sends a group's commit and goes on to the
    next group's jobs (``start_flush``), and the child starts on them as soon as it has
    committed, without waiting for this process's event loop. The requests of one
    transaction must follow each other without another's in between (the store's writer
    sends one transaction's at a time)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = 0
        self._writer: asyncio.StreamWriter | None = None
        self._replies: deque[asyncio.Future[Any]] = deque()
        self._reading: asyncio.Task[None] | None = None

    async def start(self) -> None:
        mine, theirs = socket.socketpair()
        for sock in (mine, theirs):  # a group's request (~100 KB) in one send, not a partial one and a wait
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
        try:
            self.pid = await asyncio.to_thread(_zygote().fork, self.path, theirs)
        finally:
            theirs.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=mine)
        self._reading = asyncio.create_task(self._read_replies(reader), name="vitalgate-writer-replies")
        await self.send(("ping",))

    @property
    def alive(self) -> bool:
        """False once the child is found gone: start another."""
        return self._writer is not None

    def start_flush(self, keys: Keys | None, writes: Sequence[PendingWrite], now: int,
                    extra: list[tuple[str, list[dict[str, Any]]]], cursors: Mapping[str, int],
                    commit: bool, members: Members, guards: Sequence[Guard]) -> Awaitable[tuple[Keys | None, int]]:
        """Send ``_flush.flush_sqlite``'s request now; the awaitable sets each write's
        ``result`` / ``skipped`` and ``members.fresh`` (the sets the child's transaction has
        written rows of) from the reply, and gives the keys and max seq."""
        k = None if keys is None else (keys.rid, keys.vid, keys.seq)
        reply = self.send(("flush", k, [_wire(w) for w in writes], now, extra, dict(cursors), commit, list(guards)))

        async def outcome() -> tuple[Keys | None, int]:
            k2, max_seq, outcomes, members.fresh = await reply
            for w, (result, skipped) in zip(writes, outcomes, strict=True):
                w.result, w.skipped = (None if result is None else Written(*result)), skipped
            return (None if k2 is None else Keys(*k2)), max_seq

        return outcome()

    async def rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """A statement inside the transaction (taking the write lock first), all its rows."""
        rows: list[tuple[Any, ...]] = await self.send(("rows", sql, list(params)))
        return rows

    async def rollback(self) -> None:
        await self.send(("rollback",))

    async def close(self) -> None:
        """Stop the child; returns once it has rolled back what was open and closed the file."""
        if self._writer is not None:
            with contextlib.suppress(StorageError):
                await self.send(("close",))
        self._gone()
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
            self._reading = None

    def send(self, request: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Send ``request`` now; the future is its reply (an error raised in the child is
        raised by the future)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._writer is None:
            fut.set_exception(WriterGone("the SQLite writer process is gone"))
            return fut
        body = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(_HEAD.pack(len(body)) + body)
        self._replies.append(fut)
        return fut

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (n,) = _HEAD.unpack(await reader.readexactly(_HEAD.size))
                ok, value = pickle.loads(await reader.readexactly(n))
                fut = self._replies.popleft()
                if fut.cancelled():
                    continue  # its waiter went away; the stream stays in step
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
        except (OSError, asyncio.IncompleteReadError, IndexError):
            self._gone()

    def _gone(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        while self._replies:
            fut = self._replies.popleft()
            if not fut.done():
                fut.set_exception(WriterGone("the SQLite writer process is gone"))


# -- the child --------------------------------------------------------------------------------
def _serve(sock: socket.socket, path: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from fhir_server.search.extract import extract_index

    from ._flush import flush_sqlite
    from .engine import SQLITE_PRAGMAS

    db = sqlite3.connect(path, check_same_thread=False)
    for pragma in SQLITE_PRAGMAS:
        db.execute(f"PRAGMA {pragma}")
    known: set[str] = set()  # series_member sets committed
    members = Members(known)
    tables: dict[str, _Table] = {}

    def flush(k: tuple[int, int, int] | None, wire: list[_Wire], now: int,
              extra: list[tuple[str, list[dict[str, Any]]]], cursors: dict[str, int],
              commit: bool, guards: list[Guard]) -> tuple[tuple[int, int, int] | None, int, list[Any], set[str]]:
        writes = [PendingWrite(t_, i, r, m, im, mne, if_absent=ia, minted=mi,  # type: ignore[arg-type]
                               prepared=None if p is None else Prepared(*p))
                  for t_, i, r, m, im, mne, ia, mi, p in wire]
        named = [(tables.setdefault(name, _Table(name)), rows) for name, rows in extra]
        keys = None if k is None else Keys(*k)
        try:
            keys2, max_seq = flush_sqlite(db, keys, writes, extract_index, now, named, cursors,  # type: ignore[arg-type]
                                          commit, members, guards)
        except BaseException:
            if commit:  # the transaction ends here: the next request may be the next transaction's
                rollback()
            raise
        fresh = set(members.fresh)  # the transaction's so far: the parent keeps the same books
        if commit:
            _committed()
        k2 = None if keys2 is None else (keys2.rid, keys2.vid, keys2.seq)  # None: nothing was flushed
        return k2, max_seq, [_outcome(w) for w in writes], fresh

    def _committed() -> None:
        remember_sets(known, members.fresh)
        members.fresh.clear()

    def rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        if not db.in_transaction:
            db.execute("BEGIN IMMEDIATE")
        return db.execute(sql, params).fetchall()

    def rollback() -> None:
        if db.in_transaction:
            db.rollback()
        members.fresh.clear()

    ops: dict[str, Callable[..., Any]] = {"flush": flush, "rows": rows, "rollback": rollback,
                                          "ping": os.getpid, "close": rollback}
    f = sock.makefile("rb")
    try:
        while True:
            head = f.read(_HEAD.size)
            if len(head) < _HEAD.size:
                return  # the parent closed its end or died
            request = pickle.loads(f.read(_HEAD.unpack(head)[0]))
            try:
                reply: tuple[bool, Any] = (True, ops[request[0]](*request[1:]))
            except Exception as exc:  # noqa: BLE001 - handed to the parent, which fails the jobs
                reply = (False, _portable(exc))
            if request[0] == "close":
                db.close()
            body = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            sock.sendall(_HEAD.pack(len(body)) + body)
            if request[0] == "close":
                return
    finally:
        with contextlib.suppress(Exception):
            db.rollback()
        db.close()


# -- the zygote ---------------------------------------------------------------------------------
class _Zygote:
    """The parent's handle on its zygote (one a process, started on first use)."""

    def __init__(self) -> None:
        self._sock, theirs = socket.socketpair()
        self._proc = subprocess.Popen([sys.executable, "-m", "fhir_server.storage.writer_zygote", str(theirs.fileno())],
                                      pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def fork(self, path: str, sock: socket.socket) -> int:
        """A child serving ``path`` on ``sock`` (blocking: call it in a thread); its pid."""
        with self._lock:
            socket.send_fds(self._sock, [os.fsencode(path)], [sock.fileno()])
            pid = self._sock.recv(8)
        if len(pid) < 8:
            raise StorageError("the SQLite writer's zygote is gone")
        return int(_HEAD.unpack(pid)[0])


_the_zygote: _Zygote | None = None
_zygote_lock = threading.Lock()


def _zygote() -> _Zygote:
    global _the_zygote
    with _zygote_lock:
        if _the_zygote is None or not _the_zygote.alive:
            _the_zygote = _Zygote()
        return _the_zygote


class _Table:
    """An extra table's name: all ``flush_sqlite`` reads of a ``Table`` (the parent's
    ``Table`` objects belong to packages the child need not import)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling (the store translates sqlite3 errors, the API
    VersionConflict), else a StorageError naming it."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001
        return StorageError(f"database error: {type(exc).__name__}")
    return exc
