"""Database engines: SQLite (WAL, synchronous=FULL) by default, PostgreSQL through asyncpg."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

# synchronous=FULL: an ACK or a 201 is only sent once the commit is durable.
SQLITE_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=FULL",
    "busy_timeout=10000",
    # 256 MiB, allocated as used: keeps the hot index leaves of a busy ingest in memory
    "cache_size=-262144",
    "temp_store=MEMORY",
    "foreign_keys=OFF",
    # a group commit of MLLP messages dirties ~300-500 pages (index leaves spread over
    # many keys): at the default 1000-page threshold every 2nd or 3rd commit paid a
    # checkpoint; at 10000 (~40 MB of WAL) pages rewritten by many commits are copied
    # back once. Measured +25-30% sustained ingest (bench/mllp_ingest.py). A Store on a
    # file checkpoints on a connection of its own in a worker thread (storage/checkpoint.py),
    # so this threshold is the backstop, reached only when that falls behind
    "wal_autocheckpoint=10000",
)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    for pragma in SQLITE_PRAGMAS:
        cur.execute(f"PRAGMA {pragma}")
    cur.close()


def make_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    """Build the async engine for ``url`` (already normalised to an async driver).

    ``pool_size`` covers the REST API's concurrent readers: a checkout beyond the pool opens
    a fresh connection and closes it after use, which on PostgreSQL costs a connect per read
    (16 concurrent clients over a pool of 5 held reads near 300/s). LIFO checkout keeps the
    few connections a sequential client needs hot (asyncpg's prepared statements and plans
    live per connection) instead of cycling through all of them.
    """
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_use_lifo=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql"):
        # jit off: PostgreSQL JIT-compiles any plan estimated above jit_above_cost, which a
        # search without a selective clause reaches at ~100,000 rows; compiling took longer
        # than running (`_sort=date` by the generic plan: see the engine's docstring)
        return create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_use_lifo=True,
                                   connect_args={"server_settings": {"jit": "off"}})
    return create_async_engine(url, poolclass=NullPool)
