"""Hand-written SQL for the REST layer's hottest reads, run in one driver call.

A read through SQLAlchemy Core costs more than the database does here: building the
statement, its cache key, the pooled connection's checkout and reset, and on SQLite one
aiosqlite thread hop per cursor step (profiled: ~40% of a search's CPU, ~1.5 ms a read on a
loaded 2-core machine, against 0.05-0.7 ms of SQL). The three reads a monitoring
dashboard repeats (read by id, ``$lastn`` by code, ``patient&code&date=ge``) therefore run
fixed SQL text here:

- SQLite: raw ``sqlite3`` read connections, one per worker thread of a small pool owned by
  the engine; a whole read (every statement of it) is one hop to that thread. WAL lets them
  read while the writer commits; each statement sees the last committed state.
- PostgreSQL: the asyncpg connection under SQLAlchemy's pool, ``fetch`` with ``$n``
  parameters (the statement is prepared once per connection by asyncpg's cache).

Everything else goes through SQLAlchemy as before. These reads run only on the store
(never inside a writer transaction, whose reads must see its own unflushed writes).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from fhir_server.errors import StorageError
from fhir_server.search.composite import UNDATED
from fhir_server.storage import Store
from fhir_server.storage.engine import SQLITE_PRAGMAS

__all__ = ["MEMBERS_OF_PATIENT_SQL", "PREV", "READ_SQL", "SERIES_OF_PATIENT_SQL", "SNAPSHOT_SQL", "Later",
           "bytewise_text", "fetch_many", "lastn_of_code", "lastn_of_series", "members_sql", "page_of",
           "series_search_sql", "tops_of_series", "usable"]

READ_THREADS = 4
Stmt = tuple[str, Sequence[Any]]
# a statement built from the rows of the statements before it (in the same read)
Later = Callable[[list[list[Any]]], Stmt]


def usable(db: Any) -> bool:
    """True for the store itself (not a ``WriteTx``) on SQLite or PostgreSQL."""
    return isinstance(db, Store) and db.engine.dialect.name in ("sqlite", "postgresql")


@cache
def _pg(sql: str) -> str:
    n = iter(range(1, 1000))
    return re.sub(r"\?", lambda _: f"${next(n)}", sql)


class _SqliteReaders:
    """A few read-only threads, each with its own connection to the database file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="vitalgate-read")

    def _conn(self) -> sqlite3.Connection:
        c: sqlite3.Connection | None = getattr(self.local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in SQLITE_PRAGMAS:
                if not pragma.startswith(("journal_mode", "wal_autocheckpoint")):
                    c.execute(f"PRAGMA {pragma}")
            c.execute("PRAGMA query_only=ON")
            self.local.conn = c
        return c

    def run(self, stmts: Sequence[Stmt | Later]) -> list[list[Any]]:
        c = self._conn()
        out: list[list[Any]] = []
        if len(stmts) > 1:
            c.execute("BEGIN")  # one read snapshot for all of them
        try:
            for stmt in stmts:
                sql, params = stmt(out) if callable(stmt) else stmt
                out.append(c.execute(sql, _bind(params, out[-1] if out else None)).fetchall())
        finally:
            if c.in_transaction:
                c.execute("COMMIT")
        return out


_readers: weakref.WeakKeyDictionary[Any, _SqliteReaders] = weakref.WeakKeyDictionary()


def _sqlite_readers(store: Store) -> _SqliteReaders:
    engine = store.engine
    r = _readers.get(engine)
    if r is None:
        path = engine.url.database
        if not path or path == ":memory:":
            raise LookupError("in-memory SQLite has no second connection")
        r = _readers[engine] = _SqliteReaders(path)
        weakref.finalize(engine, r.pool.shutdown, wait=False)
    return r


async def fetch_many(store: Store, stmts: Sequence[Stmt | Later]) -> list[list[Any]]:
    """Run ``stmts`` (SQL with ``?`` parameters, or a function of the rows of those before it
    giving one) and return each one's rows."""
    try:
        if store.engine.dialect.name == "sqlite":
            readers = _sqlite_readers(store)
            return await asyncio.get_running_loop().run_in_executor(readers.pool, readers.run, stmts)
        async with store.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            pg: Any = raw.driver_connection
            out: list[list[Any]] = []
            for stmt in stmts:
                sql, params = stmt(out) if callable(stmt) else stmt
                out.append(await pg.fetch(_pg(sql), *_bind(params, out[-1] if out else None)))
            return out
    except (sqlite3.Error, SQLAlchemyError) as exc:
        raise StorageError(f"database error: {type(exc).__name__}") from exc


_bytewise: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
# PostgreSQL's default collation decides the order of a text index: only under these does a
# range [prefix, prefix + "}") hold exactly the strings that start with the prefix
_BYTEWISE_COLLATIONS = {"c", "posix", "c.utf-8", "c.utf8"}


async def bytewise_text(store: Store) -> bool:
    """True when text index ranges follow code point order (SQLite's BINARY, PostgreSQL "C")."""
    engine = store.engine
    known = _bytewise.get(engine)
    if known is None:
        known = True
        if engine.dialect.name != "sqlite":
            # datlocprovider exists from PostgreSQL 15 on ('i' = ICU, never byte order)
            (row,) = (await fetch_many(store, [(
                "SELECT datcollate, to_jsonb(d) ->> 'datlocprovider' FROM pg_database d "
                "WHERE datname = current_database()", ())]))[0]
            known = str(row[0]).lower() in _BYTEWISE_COLLATIONS and row[1] in (None, "c")
        _bytewise[engine] = known
    return known


class Prev:
    """A parameter standing for the first value of the previous statement's first row."""


PREV = Prev()


def _bind(params: Sequence[Any], prev: list[Any] | None) -> tuple[Any, ...]:
    if not any(p is PREV for p in params):
        return tuple(params)
    value = prev[0][0] if prev else None
    return tuple(value if p is PREV else p for p in params)


# ---- the statements ---------------------------------------------------------------------

READ_SQL = (
    "SELECT r.version, r.last_updated, r.deleted, v.body FROM resource r "
    "JOIN resource_version v ON v.vid = r.vid WHERE r.type = ? AND r.id = ?"
)
SNAPSHOT_SQL = "SELECT coalesce(max(rid), 0) FROM resource"
_PAGE = "r.rid, r.type, r.id, r.version, r.last_updated, v.body"
_LIVE = "(SELECT l.rid FROM resource l WHERE l.rid = d.rid AND l.deleted = ? LIMIT 1) IS NOT NULL"
# One patient's series, by skipping from one end-time row param to the next in ix_date_lo
# (one index seek a series, however long each is). Parameters: the bounds of
# composite.patient_series_bounds, then hi again.
SERIES_OF_PATIENT_SQL = (
    "WITH RECURSIVE s(p) AS ("
    "SELECT (SELECT param FROM idx_date WHERE param > ? AND param < ? ORDER BY param LIMIT 1) "
    "UNION ALL SELECT (SELECT param FROM idx_date WHERE param > s.p AND param < ? ORDER BY param LIMIT 1) "
    "FROM s WHERE s.p IS NOT NULL) SELECT p FROM s WHERE p IS NOT NULL"
)


def _category(category: Sequence[tuple[str | None, str | None]]) -> tuple[tuple[tuple[bool, bool], ...], list[Any]]:
    alts = tuple((s is not None, c is not None) for s, c in category)
    values: list[Any] = []
    for s, c in category:
        values += ([c] if c is not None else []) + ([s] if s is not None else [])
    return alts, values


def _category_sql(alts: tuple[tuple[bool, bool], ...]) -> str:
    if not alts:
        return ""
    ors = " OR ".join("(" + " AND ".join((["c.code = ?"] if has_code else []) + (["c.system = ?"] if has_system
                                                                                  else [])) + ")"
                      if has_code or has_system else "(1 = 1)" for has_system, has_code in alts)
    return (" AND (SELECT c.rid FROM idx_token c WHERE c.rid = d.rid AND c.param = 'Observation.category' "
            f"AND ({ors}) LIMIT 1) IS NOT NULL")


# one series' newest live readings (parameters: its param, UNDATED, False, [category], n)
_TOP = (f"SELECT d.rid AS rid, d.lo AS lo FROM idx_date d WHERE d.param = ? AND d.lo > ? AND {_LIVE} "
        "ORDER BY d.lo DESC, d.rid DESC LIMIT ?")
_NOTHING = f"SELECT {_PAGE} FROM resource r JOIN resource_version v ON v.vid = r.vid WHERE 1 = 0"
_NEWEST = ("ORDER BY (SELECT max(x.lo) FROM idx_date x WHERE x.rid = r.rid AND x.param = 'Observation.date') DESC, "
           "r.rid DESC")


def lastn_of_series(series: Sequence[str], category: Sequence[tuple[str | None, str | None]], n: int) -> Stmt:
    """``$lastn`` over the given series: the newest ``n`` live readings of each (of a category:
    ``(system, code)`` alternatives, None matching any), newest first by the Observation's own
    latest date start, as ``build_lastn`` orders. One series and no category is the dashboard's
    ``$lastn`` by code."""
    alts, per_series = _category(category)
    return _lastn_of_series_sql(len(series), alts), [False, *_tops_params(series, per_series, n)]


def _tops_params(series: Sequence[str], per_series: list[Any], n: int) -> list[Any]:
    """The parameters of ``_top`` for each series in turn."""
    params: list[Any] = []
    for p in series:
        params += [p, UNDATED, False, *per_series, n]
    return params


def _top(alts: tuple[tuple[bool, bool], ...]) -> str:
    """``_TOP`` of a category (``_category``'s alternatives)."""
    return _TOP.replace(" ORDER BY", _category_sql(alts) + " ORDER BY")


@cache
def _lastn_of_series_sql(count: int, alts: tuple[tuple[bool, bool], ...]) -> str:
    top = _top(alts)
    union = " UNION ALL ".join(f"SELECT s{i}.rid FROM ({top}) s{i}" for i in range(count))
    return (f"SELECT {_PAGE} FROM resource r JOIN resource_version v ON v.vid = r.vid "
            f"WHERE r.deleted = ? AND r.rid IN ({union}) {_NEWEST}")


@cache
def members_sql(count: int) -> str:
    """The ``series_member`` rows of ``count`` coding params (composite.series_of)."""
    return f"SELECT pkey, set_param FROM series_member WHERE pkey IN ({', '.join('?' * count)})"


# every series_member row of one patient: the bounds of composite.patient_series_bounds
MEMBERS_OF_PATIENT_SQL = "SELECT pkey, set_param FROM series_member WHERE pkey > ? AND pkey < ?"


def lastn_of_code(series: Sequence[str], n: int) -> Stmt:
    """``$lastn`` of one code (the dashboard's): the newest ``n`` live readings of the union of
    ``series`` (the code's, composite.series_of), as ``lastn_of_series`` orders them."""
    if len(series) <= 1:
        return lastn_of_series(series, [], n) if series else (_NOTHING, [])
    return _lastn_of_union_sql(len(series)), [False, *_tops_params(series, [], n), n]


@cache
def _lastn_of_union_sql(count: int) -> str:
    union = " UNION ALL ".join(f"SELECT s{i}.rid, s{i}.lo FROM ({_TOP}) s{i}" for i in range(count))
    return (f"SELECT {_PAGE} FROM resource r JOIN resource_version v ON v.vid = r.vid "
            f"WHERE r.deleted = ? AND r.rid IN (SELECT u.rid FROM ({union}) u ORDER BY u.lo DESC, u.rid DESC "
            f"LIMIT ?) {_NEWEST}")


def tops_of_series(series: Sequence[str], category: Sequence[tuple[str | None, str | None]], n: int) -> Stmt:
    """The newest ``n`` live readings of each series (of a category, as ``lastn_of_series``):
    rows ``(rid, end, index of its series)``."""
    alts, per_series = _category(category)
    return _tops_sql(len(series), alts), _tops_params(series, per_series, n)


@cache
def _tops_sql(count: int, alts: tuple[tuple[bool, bool], ...]) -> str:
    top = _top(alts)
    return " UNION ALL ".join(f"SELECT s{i}.rid, s{i}.lo, {i} FROM ({top}) s{i}" for i in range(count))


def page_of(rids: Sequence[int]) -> Stmt:
    """The live resources ``rids``, ordered as ``lastn_of_series`` orders them."""
    return _page_of_sql(len(rids)), [False, *rids]


@cache
def _page_of_sql(count: int) -> str:
    return (f"SELECT {_PAGE} FROM resource r JOIN resource_version v ON v.vid = r.vid "
            f"WHERE r.deleted = ? AND r.rid IN ({', '.join('?' * count)}) {_NEWEST}")


_DATE_MATCH = {"ge": "(x.hi > ? OR x.lo >= ?)", "gt": "x.hi > ?"}
_END_BOUND = {"ge": "d.lo >= ?", "gt": "d.lo > ?"}


@cache
def series_search_sql(prefix: str, count: int = 1) -> str:
    """One page of the readings of ``count`` series matching ``date=<prefix>``, in rid order,
    within the snapshot.

    Parameters: the series params, bound, snapshot, False (deleted), date-match values, limit, offset.
    """
    param = "d.param = ?" if count == 1 else f"d.param IN ({', '.join('?' * count)})" if count else "1 = 0"
    return (
        f"SELECT {_PAGE} FROM idx_date d JOIN resource r ON r.rid = d.rid "
        "JOIN resource_version v ON v.vid = r.vid "
        f"WHERE {param} AND {_END_BOUND[prefix]} AND d.rid <= ? AND r.deleted = ? "
        "AND r.type = 'Observation' AND (SELECT x.rid FROM idx_date x WHERE x.rid = d.rid "
        f"AND x.param = 'Observation.date' AND {_DATE_MATCH[prefix]} LIMIT 1) IS NOT NULL "
        "ORDER BY d.rid LIMIT ? OFFSET ?"
    )
