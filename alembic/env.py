"""Alembic environment: runs migrations on the async engine named by the config URL.

SQLite uses batch mode (``render_as_batch``) so ALTERs work there too.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context

config = context.config
target_metadata = config.attributes.get("target_metadata")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_async_engine(config.get_main_option("sqlalchemy.url"))
    async with engine.begin() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


_connection = config.attributes.get("connection")
if _connection is not None:  # called from running code with a sync connection in hand
    _run(_connection)
else:
    asyncio.run(_main())
