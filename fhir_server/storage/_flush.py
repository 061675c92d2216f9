"""Flush queued writes into the writer's transaction: one statement per table, no RETURNING.

Keys are assigned by :mod:`._plan` from the highest stored keys, read once per transaction
under the writer's lock, so every insert is a plain ``executemany``.

- SQLite: the whole flush (lock, key read, lookup, planning, every ``executemany``, extra rows
  and cursors) runs as ONE call in aiosqlite's worker thread on the raw ``sqlite3``
  connection: one thread hop per flush instead of one per statement (or per row, which is
  what ``INSERT ... RETURNING`` with ordered results costs there). ``BEGIN IMMEDIATE`` takes
  SQLite's write lock before the keys are read, so another process writing the same file
  (``vitalgate inbox replay``) can never be handed the same keys.
- PostgreSQL: the same plan, one ``INSERT ... SELECT FROM unnest($1::type[], ...)`` per
  table (column arrays as parameters: one round trip whatever the row count), all of them,
  with the updates and the deletion of replaced index rows, in one statement (``WITH``
  items); the store already holds a transaction-scoped advisory lock when the keys are read.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir_server.errors import PreconditionFailed

from . import schema as t
from ._plan import (
    INDEX_COLS,
    LOG_COLS,
    MEMBER_COLS,
    RESOURCE_COLS,
    VERSION_COLS,
    Current,
    Indexer,
    Keys,
    Members,
    Plan,
    plan,
)
from .types import PendingWrite

__all__ = ["Extra", "Indexer", "Keys", "Members", "flush_core", "flush_sqlite"]

Extra = list[tuple[Table, list[dict[str, Any]]]]
Guard = tuple[str, tuple[Any, ...]]  # SQL with ? placeholders that must return no row, its parameters
_CHUNK = 400
_MAX_KEYS = (
    "SELECT (SELECT max(rid) FROM resource), (SELECT max(vid) FROM resource_version), "
    "(SELECT max(seq) FROM change_log)"
)


def _insert_sql(table: str, cols: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


_SQL_RESOURCE = _insert_sql("resource", RESOURCE_COLS)
_SQL_VERSION = _insert_sql("resource_version", VERSION_COLS)
_SQL_LOG = _insert_sql("change_log", LOG_COLS)
_SQL_UPDATE = "UPDATE resource SET version = ?, vid = ?, deleted = ?, last_updated = ? WHERE rid = ?"
_SQL_INDEX = {kind: _insert_sql(t.INDEX_TABLES[kind].name, ("rid", *cols)) for kind, cols in INDEX_COLS.items()}
# a set's rows may exist already: written by another process, or before this one started
_SQL_MEMBER = f"INSERT OR IGNORE INTO {t.series_member.name} ({', '.join(MEMBER_COLS)}) VALUES (?, ?)"
_SQL_CURSOR = (
    "INSERT INTO consumer_cursor (name, seq, updated) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated = excluded.updated"
)


# rows of one table: (table, columns, rows)
_Insert = tuple[Table, tuple[str, ...], list[tuple[Any, ...]]]


def _extra_runs(extra: Extra) -> list[_Insert]:
    """The extra rows as inserts: consecutive entries of one table with the same columns share
    one (a group's inbox rows, one entry a message: one statement on PostgreSQL, not one each).
    An entry's columns are those of any of its rows; a row without one inserts NULL."""
    runs: list[_Insert] = []
    for table, rows in extra:
        if not rows:
            continue
        cols = tuple(dict.fromkeys(c for r in rows for c in r))
        values = [tuple(r.get(c) for c in cols) for r in rows]
        if runs and runs[-1][0] is table and runs[-1][1] == cols:
            runs[-1][2].extend(values)
        else:
            runs.append((table, cols, values))
    return runs


def _stored_keys(writes: Sequence[PendingWrite]) -> set[tuple[str, str]]:
    """The keys whose stored state the plan needs: all but freshly minted ids."""
    return {(w.type, w.id) for w in writes if not w.minted}


def _by_type(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for type_, id_ in keys:
        out.setdefault(type_, []).append(id_)
    return out


# -- SQLite: one call in the driver's thread ----------------------------------------------
def flush_sqlite(
    db: sqlite3.Connection, keys: Keys | None, writes: Sequence[PendingWrite], indexer: Indexer,
    now: int, extra: Extra, cursors: Mapping[str, int], commit: bool, members: Members,
    guards: Sequence[Guard],
) -> tuple[Keys | None, int]:
    """Runs in aiosqlite's thread on the raw connection; returns the keys and max seq.
    ``commit``: commit the transaction too (the group's last flush). ``guards``: queries that
    must find no row (``WriteTx.expect_empty``), run first; the caller rolls back on failure."""
    if not (writes or extra or cursors or guards):
        if commit and db.in_transaction:
            db.commit()
        return keys, 0
    if not db.in_transaction:
        db.execute("BEGIN IMMEDIATE")  # the write lock first: the keys read below stay ours
    for sql, params in guards:
        if db.execute(sql, params).fetchone() is not None:
            raise PreconditionFailed(f"expected no row: {sql[:80]}")
    if keys is None:
        rid, vid, seq = db.execute(_MAX_KEYS).fetchone()
        keys = Keys(rid or 0, vid or 0, seq or 0)
    max_seq = 0
    if writes:
        p = plan(writes, _lookup_sqlite(db, _stored_keys(writes)), keys, indexer, now)
        _write_sqlite(db, p)
        if p.members and (rows := members.take(p.members)):
            db.executemany(_SQL_MEMBER, rows)
        max_seq = p.max_seq
    for table, cols, values in _extra_runs(extra):
        db.executemany(_insert_sql(table.name, cols), values)
    if cursors:
        db.executemany(_SQL_CURSOR, [(name, seq, now) for name, seq in cursors.items()])
    if commit:
        db.commit()
    return keys, max_seq


def _lookup_sqlite(db: sqlite3.Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Current]:
    found: dict[tuple[str, str], Current] = {}
    for type_, ids in _by_type(keys).items():
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            sql = ("SELECT rid, id, version, deleted, vid FROM resource WHERE type = ? AND id IN ("
                   + ", ".join("?" * len(chunk)) + ")")
            for rid, id_, version, deleted, vid in db.execute(sql, (type_, *chunk)):
                found[(type_, id_)] = Current(rid, version, bool(deleted), True, vid)
    return found


def _write_sqlite(db: sqlite3.Connection, p: Plan) -> None:
    if p.new_resources:
        db.executemany(_SQL_RESOURCE, p.new_resources)
    if p.updates:
        db.executemany(_SQL_UPDATE, p.updates)
    if p.versions:
        db.executemany(_SQL_VERSION, p.versions)
    if p.stale:
        for table in t.INDEX_TABLES.values():
            db.executemany(f"DELETE FROM {table.name} WHERE rid = ?", [(rid,) for rid in p.stale])
    for kind, rows in p.index.items():
        db.executemany(_SQL_INDEX[kind], rows)
    if p.log:
        db.executemany(_SQL_LOG, p.log)


# -- PostgreSQL: the inserts of all tables as ONE statement of INSERT ... SELECT FROM unnest(arrays) ----
def _pg_type(table: Table, col: str) -> str:
    # no length in the cast: ``::VARCHAR(64)`` would truncate silently, the column refuses
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return re.sub(r"\(\d+\)", "", table.c[col].type.compile(dialect=dialect))


def _pg_insert(table: Table, cols: Sequence[str], first: int = 1) -> str:
    """Column arrays in, rows out: one statement and one round trip for any number of rows
    (asyncpg's executemany still pays a protocol message and an executor call per row).
    ``first``: the number of the first parameter."""
    arrays = ", ".join(f"${i}::{_pg_type(table, c)}[]" for i, c in enumerate(cols, first))
    return f"INSERT INTO {table.name} ({', '.join(cols)}) SELECT * FROM unnest({arrays})"


_UPDATE_COLS = ("version", "vid", "deleted", "last_updated", "rid")  # Plan.updates' order


@lru_cache(maxsize=128)
def _pg_flush_sql(stale: bool, updates: bool, parts: tuple[tuple[Table, tuple[str, ...]], ...]) -> str:
    """A whole flush as one statement, each part but the last a data-modifying ``WITH`` item
    (which PostgreSQL runs to completion whether or not the main statement reads it): the
    deletion of replaced index rows (``stale``: parameter 1, their rids), the updates of
    resource rows (``updates``: one array a column), then the inserts into several tables
    (name, columns). One round trip for a flush instead of one per table and step. The items
    share one snapshot, so a delete never sees the rows the same statement inserts."""
    stmts, n = [], 1
    if stale:
        rid_type = _pg_type(t.resource, "rid")
        stmts += [f"DELETE FROM {table.name} WHERE rid = ANY($1::{rid_type}[])" for table in t.INDEX_TABLES.values()]
        n = 2
    if updates:
        arrays = ", ".join(f"${n + i}::{_pg_type(t.resource, c)}[]" for i, c in enumerate(_UPDATE_COLS))
        sets = ", ".join(f"{c} = u.{c}" for c in _UPDATE_COLS if c != "rid")
        stmts.append(f"UPDATE resource AS r SET {sets} FROM unnest({arrays}) AS u({', '.join(_UPDATE_COLS)}) "
                     "WHERE r.rid = u.rid")
        n += len(_UPDATE_COLS)
    for table, cols in parts:
        # a set's rows may exist already (see _SQL_MEMBER)
        stmts.append(_pg_insert(table, cols, n) + (" ON CONFLICT DO NOTHING" if table is t.series_member else ""))
        n += len(cols)
    if len(stmts) == 1:
        return stmts[0]
    return "WITH " + ", ".join(f"w{i} AS ({x})" for i, x in enumerate(stmts[:-1])) + " " + stmts[-1]


def _columns(rows: list[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    return tuple(list(col) for col in zip(*rows, strict=True))


_PG_INDEX_COLS = {kind: ("rid", *cols) for kind, cols in INDEX_COLS.items()}
# every type's keys in one statement (one round trip a group, not one a type)
_PG_LOOKUP = ("SELECT r.rid, r.type, r.id, r.version, r.deleted, r.vid FROM unnest($1::varchar[], $2::varchar[]) "
              "AS k(type, id) JOIN resource r ON r.type = k.type AND r.id = k.id")


async def flush_core(
    conn: AsyncConnection, keys: Keys | None, writes: Sequence[PendingWrite], indexer: Indexer,
    now: int, extra: Extra, cursors: Mapping[str, int], members: Members,
) -> tuple[Keys, int]:
    """The same flush as :func:`flush_sqlite` on PostgreSQL (the caller holds the advisory
    lock, so the keys read here are not handed out by another process). Rows go straight
    to the driver's ``executemany``: SQLAlchemy's per-row parameter processing would cost
    more than the database does."""
    if keys is None:
        rid, vid, seq = tuple((await conn.exec_driver_sql(_MAX_KEYS)).one())
        keys = Keys(rid or 0, vid or 0, seq or 0)
    max_seq = 0
    p = Plan()
    if writes:
        p = plan(writes, await _lookup_core(conn, _stored_keys(writes)), keys, indexer, now)
        max_seq = p.max_seq
    inserts = _pg_plan_inserts(p)
    if p.members and (rows := members.take(p.members)):
        inserts.append((t.series_member, MEMBER_COLS, rows))
    runs = _extra_runs(extra)
    if len(runs) == 1:  # a group's inbox rows ride in the same statement
        inserts += runs
        runs = []
    if inserts or p.stale or p.updates:
        sql = _pg_flush_sql(bool(p.stale), bool(p.updates), tuple((table, cols) for table, cols, _ in inserts))
        args: list[Any] = [p.stale] if p.stale else []
        if p.updates:
            args += _columns(p.updates)
        args += [a for _, _, rows in inserts for a in _columns(rows)]
        await conn.exec_driver_sql(sql, tuple(args))
    # several runs: one statement each, in order (the items of one statement run in no set
    # order, and the order of serial keys such as the inbox's pk must follow the jobs)
    for table, cols, values in runs:
        await conn.exec_driver_sql(_pg_insert(table, cols), _columns(values))
    if cursors:
        await _save_cursors(conn, cursors, now)
    return keys, max_seq


async def _lookup_core(conn: AsyncConnection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Current]:
    if not keys:
        return {}
    types, ids = zip(*keys, strict=True)
    rows: Any = await conn.exec_driver_sql(_PG_LOOKUP, (list(types), list(ids)))
    return {(type_, id_): Current(rid, version, bool(deleted), True, vid)
            for rid, type_, id_, version, deleted, vid in rows}


def _pg_plan_inserts(p: Plan) -> list[_Insert]:
    """The plan's inserts (no insert depends on another: the tables have no foreign keys)."""
    inserts: list[_Insert] = [(t.resource, RESOURCE_COLS, p.new_resources),
                              (t.resource_version, VERSION_COLS, p.versions)]
    inserts += [(t.INDEX_TABLES[kind], _PG_INDEX_COLS[kind], rows) for kind, rows in p.index.items()]
    inserts.append((t.change_log, LOG_COLS, p.log))
    return [x for x in inserts if x[2]]


async def _save_cursors(conn: AsyncConnection, cursors: Mapping[str, int], now: int) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    for name, seq in cursors.items():
        stmt = upsert(t.consumer_cursor).values(name=name, seq=seq, updated=now)
        stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={"seq": stmt.excluded.seq, "updated": now})
        await conn.execute(stmt)


