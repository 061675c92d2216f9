"""Contract tests of the storage call and the change log, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from fhir_server.errors import VersionConflict
from fhir_server.storage import WriteTx, loads


def obs(value: str = "1.50") -> dict:
    return loads(
        '{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org",'
        '"code":"8867-4"}]},"subject":{"reference":"Patient/p1"},'
        '"valueQuantity":{"value":' + value + ',"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}'
    )


async def test_put_keeps_decimal_precision_and_sets_meta(store):
    w = await store.put("Observation", "o1", obs("1.50"))
    assert (w.version, w.created, w.deleted) == (1, True, False)
    got = await store.read("Observation", "o1")
    assert b'"value":1.50' in got.body
    body = orjson.loads(got.body)
    assert body["id"] == "o1" and body["meta"]["versionId"] == "1"
    assert list(body)[:3] == ["resourceType", "id", "meta"]


async def test_update_delete_history_and_change_log(store):
    await store.put("Observation", "o1", obs("1"))
    w2 = await store.put("Observation", "o1", obs("2"))
    assert (w2.version, w2.created) == (2, False)

    async def rm(tx: WriteTx):
        d = tx.delete("Observation", "o1")
        await tx.flush()
        return d.written()

    d = await store.write(rm)
    assert d.deleted and d.version == 3
    cur = await store.read("Observation", "o1")
    assert cur.deleted and cur.version == 3
    v1 = await store.vread("Observation", "o1", 1)
    assert b'"value":1' in v1.body
    hist, total = await store.history("Observation", "o1")
    assert total == 3 and [h.version for h in hist] == [3, 2, 1]
    changes = await store.changes(0)
    assert [(c.op, c.version) for c in changes] == [("create", 1), ("update", 2), ("delete", 3)]
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)


async def test_if_match_conflict_rolls_back_only_that_job(store):
    await store.put("Observation", "o1", obs())

    async def bad(tx: WriteTx):
        tx.put("Observation", "o2", obs())
        tx.put("Observation", "o1", obs(), if_match=7)

    async def good(tx: WriteTx):
        tx.put("Observation", "o3", obs())

    results = await asyncio.gather(store.write(bad), store.write(good), return_exceptions=True)
    assert isinstance(results[0], VersionConflict)
    assert results[1] is None
    assert await store.read("Observation", "o2") is None  # all-or-nothing for the failed job
    assert (await store.read("Observation", "o3")).version == 1


async def test_cursor_commits_with_effects(store):
    await store.put("Observation", "o1", obs())
    [change] = await store.changes(0)

    async def consume(tx: WriteTx):
        tx.put("DetectedIssue", "d1", {"resourceType": "DetectedIssue", "status": "preliminary"})
        tx.advance_cursor("alerts", change.seq)

    await store.write(consume)
    assert await store.cursor("alerts") == change.seq
    assert await store.cursor("unknown") == 0


async def test_group_commit_wakes_consumers(store):
    start = store.notifier.seq
    waiter = asyncio.create_task(store.wait_for_change(start, timeout=5))
    await asyncio.gather(*(store.put("Observation", f"g{i}", obs()) for i in range(50)))
    assert await waiter > start
    changes = await store.changes(start)
    assert len(changes) == 50
    assert store.commits < 50  # the 50 concurrent writes were grouped


@pytest.mark.parametrize("n", [3])
async def test_same_resource_twice_in_one_transaction(store, n):
    async def job(tx: WriteTx):
        ws = [tx.put("Patient", "p", {"resourceType": "Patient", "gender": g}) for g in ["male", "female", "other"][:n]]
        await tx.flush()
        return [w.written().version for w in ws]

    assert await store.write(job) == [1, 2, 3]
    assert orjson.loads((await store.read("Patient", "p")).body)["gender"] == "other"
