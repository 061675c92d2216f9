"""The migration creates exactly the tables and columns the subscription code declares; one head."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from fhir_server.storage.migrate import alembic_config
from fhir_server.subscriptions.schema import TABLES


def test_migrations_have_a_single_head():
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, heads


async def test_migrated_tables_match_the_declared_ones(store):
    def read(conn):
        insp = inspect(conn)
        return {t.name: ({c["name"] for c in insp.get_columns(t.name)},
                         {i["name"] for i in insp.get_indexes(t.name)}) for t in TABLES}

    async with store.engine.connect() as conn:
        found = await conn.run_sync(read)
    for t in TABLES:
        cols, idx = found[t.name]
        assert cols == {c.name for c in t.columns}, t.name
        assert idx == {i.name for i in t.indexes}, t.name
