"""SQLite's writer connection in a child process (storage/writer_process.py): what the store
promises with it on top of what every ``store`` test checks in the ``sqlite-process`` variant.

A child that dies is replaced and loses only its open transaction; closing the store ends
the child and frees the file; a Ctrl-C to the process group does not stop the child; a
database in memory stays in process (a child cannot share it)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3

import pytest

from fhir_server.errors import StorageError, VersionConflict
from fhir_server.storage import Store, make_engine, upgrade


@pytest.fixture
async def db_path(tmp_path) -> str:
    path = str(tmp_path / "vitalgate.db")
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(engine)
    await engine.dispose()
    return path


async def _started(path: str) -> Store:
    store = Store(make_engine(f"sqlite+aiosqlite:///{path}"), writer_process=True)
    await store.start()
    return store


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _wait_gone(pid: int) -> bool:
    for _ in range(200):
        if _gone(pid):
            return True
        await asyncio.sleep(0.01)
    return False


def _rows(path: str, sql: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


async def test_a_dead_child_is_replaced_and_loses_only_its_open_transaction(db_path) -> None:
    store = await _started(db_path)
    try:
        assert store.writer_process
        await store.put("Patient", "a", {"active": True})
        first = store._remote.pid  # noqa: SLF001
        started = asyncio.Event()

        async def dies_mid_transaction(tx) -> None:
            tx.put("Patient", "b", {"active": True})
            await tx.flush()  # in the child's open transaction, not committed
            started.set()
            os.kill(first, signal.SIGKILL)
            assert await _wait_gone(first)
            await tx.rows("SELECT 1")  # the child is gone: this request fails

        with pytest.raises(StorageError):
            await store.write(dies_mid_transaction)
        assert started.is_set()
        # the next write gets a new child; a's commit survived, b's open transaction did not
        written = await store.put("Patient", "c", {"active": False})
        assert store._remote.pid != first  # noqa: SLF001
        assert written.version == 1
        assert await store.read("Patient", "b") is None
        assert (await store.read("Patient", "a")).version == 1
        seqs = [r[0] for r in _rows(db_path, "SELECT seq FROM change_log ORDER BY seq")]
        assert seqs == [1, 2]  # the lost transaction's keys were never written: no gap, no clash
    finally:
        await store.close()


async def test_close_ends_the_child_and_frees_the_file(db_path) -> None:
    store = await _started(db_path)
    await store.put("Patient", "a", {"active": True})
    pid = store._remote.pid  # noqa: SLF001
    await store.close()
    assert await _wait_gone(pid)
    # the write lock is free at once: a plain connection takes it without waiting
    db = sqlite3.connect(db_path, timeout=0)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.rollback()
    finally:
        db.close()


async def test_the_child_ignores_sigint_and_errors_cross_with_their_type(db_path) -> None:
    store = await _started(db_path)
    try:
        pid = store._remote.pid  # noqa: SLF001
        os.kill(pid, signal.SIGINT)  # what a Ctrl-C sends the whole process group
        await asyncio.sleep(0.05)
        assert not _gone(pid)
        await store.put("Patient", "a", {"active": True})
        with pytest.raises(VersionConflict) as info:
            await store.put("Patient", "a", {"active": False}, if_match=7)
        assert (info.value.expected, info.value.actual) == (7, 1)
        assert store._remote.pid == pid  # noqa: SLF001 - an error is not a dead child
    finally:
        await store.close()


async def test_two_stores_have_a_child_each_and_share_the_lock(db_path) -> None:
    one, two = await _started(db_path), await _started(db_path)
    try:
        assert one._remote.pid != two._remote.pid  # noqa: SLF001
        await asyncio.gather(*(s.put("Patient", f"p{k}-{i}", {"active": True})
                               for i in range(10) for k, s in enumerate((one, two))))
        seqs = [r[0] for r in _rows(db_path, "SELECT seq FROM change_log ORDER BY seq")]
        assert seqs == list(range(1, 21))  # each key handed out once, under SQLite's write lock
    finally:
        await one.close()
        await two.close()


async def test_a_database_in_memory_stays_in_process() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    store = Store(engine, writer_process=True)
    assert not store.writer_process
    await engine.dispose()


async def test_a_commit_that_fails_in_the_child_fails_only_its_job(db_path) -> None:
    """The conflict is found by the group's last flush, in the child, after the writer went on
    to the next group: that group's other jobs are committed again, each alone."""
    store = await _started(db_path)
    try:
        await store.put("Patient", "x", {"active": True})

        def job_for(i: int):
            async def job(tx) -> int:
                # no flush of its own: found out by the commit's flush
                tx.put("Patient", "x" if i == 3 else f"p{i}", {"active": True}, if_match=9 if i == 3 else None)
                return i
            return job

        outcomes = await asyncio.gather(*(store.write(job_for(i)) for i in range(8)), return_exceptions=True)
        assert isinstance(outcomes[3], VersionConflict)
        assert [o for k, o in enumerate(outcomes) if k != 3] == [0, 1, 2, 4, 5, 6, 7]
        for i in (0, 1, 2, 4, 5, 6, 7):
            assert (await store.read("Patient", f"p{i}")).version == 1
        assert (await store.read("Patient", "x")).version == 1
    finally:
        await store.close()


async def test_a_job_that_fails_mid_group_rolls_back_only_its_writes(db_path) -> None:
    store = await _started(db_path)
    try:
        def job_for(i: int):
            async def job(tx) -> int:
                tx.put("Patient", f"q{i}", {"active": True})
                await tx.flush()  # in the child's open transaction
                if i == 5:
                    raise RuntimeError("this job fails after its flush")
                return i
            return job

        outcomes = await asyncio.gather(*(store.write(job_for(i)) for i in range(8)), return_exceptions=True)
        assert isinstance(outcomes[5], RuntimeError)
        assert await store.read("Patient", "q5") is None
        for i in (0, 1, 2, 3, 4, 6, 7):
            assert outcomes[i] == i and (await store.read("Patient", f"q{i}")).version == 1
    finally:
        await store.close()


async def test_pipelined_commits_resolve_and_notify_in_seq_order(db_path) -> None:
    store = await _started(db_path)
    try:
        async def one(i: int) -> int:
            return (await store.put("Patient", f"r{i}", {"active": bool(i % 2)})).seq

        seqs = await asyncio.gather(*(one(i) for i in range(300)))
        assert sorted(seqs) == list(range(1, 301))
        # the notifier keeps one unbroken run only when told of the commits in seq order
        held = store.notifier.recent(0, 1000)
        assert held is not None and [c.seq for c, _, _ in held] == list(range(1, 301))
        assert store.notifier.seq == 300
        assert store.commits < 300  # grouped, several groups in flight
    finally:
        await store.close()
