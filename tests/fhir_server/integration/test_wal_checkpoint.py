"""WAL checkpoints on their own connection (``storage.checkpoint``): the log is copied back and reused
while the writer goes on, below ``wal_autocheckpoint``, and nothing written is lost."""

from __future__ import annotations

import asyncio
import os
import sqlite3

from sqlalchemy.ext.asyncio import create_async_engine

from fhir_server.storage import Store, WriteTx, make_engine, upgrade


def obs(n: int) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": f"reading {n}"},
            "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": n}}


async def wal_pages_after_commits(path: str, every_s: float | None) -> tuple[int, int]:
    """Size of the WAL in pages after 150 commits of 20 resources, and the checkpoints run meanwhile."""
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(engine)
    store = Store(engine, checkpoint_every_s=every_s)
    await store.start()
    try:
        for batch in range(150):
            async def job(tx: WriteTx, batch: int = batch) -> None:
                for i in range(20):
                    tx.put("Observation", f"o{batch}-{i}", obs(batch * 20 + i))

            await store.write(job)
            await asyncio.sleep(0.002)  # room between commits, as between ingest groups
        running = store.checkpointer is not None and store.checkpointer._running
        if running:
            await running
        wal = path + "-wal"
        db = sqlite3.connect(path)
        try:
            pages = db.execute("PRAGMA page_size").fetchone()[0]
            return (os.path.getsize(wal) // pages,
                    0 if store.checkpointer is None else store.checkpointer.checkpoints)
        finally:
            db.close()
    finally:
        await store.close()


async def test_background_checkpoints_keep_the_wal_small_and_lose_nothing(tmp_path):
    without, none_run = await wal_pages_after_commits(str(tmp_path / "a.db"), None)
    with_bg, run = await wal_pages_after_commits(str(tmp_path / "b.db"), 0.0)
    assert none_run == 0 and run > 0
    # without a checkpoint below the 10,000-page threshold the log only grows; with them it is reused
    assert with_bg < without / 3, (with_bg, without)
    db = sqlite3.connect(str(tmp_path / "b.db"))
    try:
        assert db.execute("SELECT count(*) FROM resource WHERE type = 'Observation'").fetchone()[0] == 3000
    finally:
        db.close()


async def test_no_checkpointer_for_memory_or_postgresql_urls():
    for url in ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite://", "postgresql+asyncpg://u@localhost/x"):
        engine = create_async_engine(url)
        assert Store(engine).checkpointer is None
        await engine.dispose()
