"""Shared fixtures: a migrated database on SQLite (always) and PostgreSQL (when reachable).

PostgreSQL tests skip with a reason when the server is absent, unless
``VITALGATE_REQUIRE_SERVICES=1`` (as in CI), where they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

PG_HOST = os.environ.get("VITALGATE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("VITALGATE_TEST_PG_PORT", "5432"))
PG_ADMIN_URL = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/test"


def services_required() -> bool:
    return os.environ.get("VITALGATE_REQUIRE_SERVICES") == "1"


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    if tcp_open(host, port):
        return
    msg = f"{name} not reachable at {host}:{port}"
    if services_required():
        pytest.fail(f"{msg} and VITALGATE_REQUIRE_SERVICES=1")
    pytest.skip(f"{msg}; set it up or run on SQLite only")


@pytest.fixture(scope="session")
def pg_database() -> str:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    need_service("PostgreSQL", PG_HOST, PG_PORT)
    import asyncpg

    name = f"vg_test_{uuid.uuid4().hex[:10]}"

    async def _admin(sql: str) -> None:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="test")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    yield f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``db_url``: SQLite and PostgreSQL; a test of the ``store`` fixture also runs with
    SQLite's writer connection in a child process (``sqlite-process``: the gateway's default)."""
    if "db_url" in metafunc.fixturenames:
        kinds = ["sqlite", "postgresql"]
        if "store" in metafunc.fixturenames:
            kinds.insert(1, "sqlite-process")
        metafunc.parametrize("db_url", kinds, indirect=True)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path}/vitalgate.db"
    return request.getfixturevalue("pg_database")


@pytest.fixture
async def store(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[object]:
    from fhir_server.storage import Store, make_engine, upgrade

    engine = make_engine(db_url)
    await upgrade(engine)
    if engine.dialect.name == "postgresql":
        await _truncate(engine)
    s = Store(engine, writer_process=request.node.callspec.params.get("db_url") == "sqlite-process")
    await s.start()
    yield s
    await s.close()


async def _truncate(engine) -> None:
    from sqlalchemy import text

    async with engine.begin() as conn:
        rows = await conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'")
        )
        names = ", ".join(f'"{r[0]}"' for r in rows)
        if names:
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
