"""Contract tests of the storage call and the change log, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from fhir_server.errors import PreconditionFailed, StorageError, VersionConflict
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


_STORED = "SELECT 1 FROM resource WHERE type = ? AND id = ?"


def guarded(name: str, must_be_absent: str):
    async def job(tx: WriteTx):
        tx.expect_empty(_STORED, ["Observation", must_be_absent])
        tx.put("Observation", name, obs())
        return name
    return job


async def test_expect_empty_fails_only_its_job_and_stores_none_of_it(store):
    await store.put("Observation", "taken", obs())
    jobs = [guarded(f"g{i}", "taken" if i == 2 else f"free{i}") for i in range(5)]
    results = await asyncio.gather(*(store.write(j) for j in jobs), return_exceptions=True)
    assert isinstance(results[2], PreconditionFailed)
    assert [r for i, r in enumerate(results) if i != 2] == ["g0", "g1", "g3", "g4"]
    assert await store.read("Observation", "g2") is None
    assert [(await store.read("Observation", n)).version for n in ("g0", "g1", "g3", "g4")] == [1] * 4


async def test_expect_empty_sees_earlier_commits_and_flushes_and_rolls_them_back(store):
    await store.write(guarded("first", "second"))
    with pytest.raises(PreconditionFailed):
        await store.write(guarded("second", "first"))  # committed by the transaction before

    async def checks_its_own_flushed_write(tx: WriteTx):
        tx.put("Observation", "mine", obs())
        await tx.flush()
        tx.expect_empty(_STORED, ["Observation", "mine"])  # checked at the commit, after that flush

    with pytest.raises(PreconditionFailed):
        await store.write(checks_its_own_flushed_write)
    assert await store.read("Observation", "mine") is None
    assert await store.read("Observation", "second") is None
    await store.write(guarded("third", "second"))  # the failures left the writer usable
    assert (await store.read("Observation", "third")).version == 1


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


# -- keys assigned by the store (read once per transaction under the writer's lock) --------
async def test_keys_continue_after_a_rolled_back_batch(store):
    await store.put("Observation", "k1", obs())

    async def fails_after_flush(tx: WriteTx):
        tx.put("Observation", "k2", obs())
        tx.put("Observation", "k1", obs("2"))
        await tx.flush()  # rows and keys are in the transaction, then it rolls back
        raise RuntimeError("job failed after writing")

    with pytest.raises(RuntimeError):
        await store.write(fails_after_flush)
    assert await store.read("Observation", "k2") is None
    w = await store.put("Observation", "k3", obs())
    u = await store.put("Observation", "k1", obs("3"))
    assert (u.version, w.version) == (2, 1)
    seqs = [c.seq for c in await store.changes(0)]
    assert seqs == sorted(set(seqs)) and len(seqs) == 3
    assert (await store.vread("Observation", "k1", 2)).body.count(b'"value":3') == 1


async def test_failed_job_in_a_group_leaves_the_others_their_keys(store):
    await store.put("Observation", "a", obs())

    async def conflict(tx: WriteTx):
        tx.put("Observation", "b", obs())
        tx.put("Observation", "a", obs(), if_match=9)

    async def fine(tx: WriteTx, i: int):
        tx.put("Observation", f"f{i}", obs())

    jobs = [store.write(conflict)] + [store.write(lambda tx, i=i: fine(tx, i)) for i in range(5)]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(results[0], VersionConflict) and results[1:] == [None] * 5
    changes = await store.changes(0)
    assert [c.id for c in changes][0] == "a" and sorted(c.id for c in changes[1:]) == [f"f{i}" for i in range(5)]
    assert [c.seq for c in changes] == sorted({c.seq for c in changes})


async def test_another_writer_on_the_same_database(store, db_url):
    """A second Store (as another process would be) writes between this store's commits:
    keys are re-read under the lock, so nothing collides and seq order is commit order."""
    from fhir_server.storage import Store, make_engine

    other = Store(make_engine(db_url))
    await other.start()
    try:
        await store.put("Observation", "s1", obs())
        await other.put("Observation", "o1", obs())
        await store.put("Observation", "s2", obs())
        await asyncio.gather(*(s.put("Observation", f"{n}{i}", obs())
                               for i in range(10) for s, n in ((store, "x"), (other, "y"))))
        await other.put("Observation", "s1", obs("9"))  # update of a row the other store made
    finally:
        await other.close()
    changes = await store.changes(0)
    assert len(changes) == 24
    assert [c.seq for c in changes] == sorted({c.seq for c in changes})
    assert [c.id for c in changes[:3]] == ["s1", "o1", "s2"]
    assert (changes[-1].id, changes[-1].version, changes[-1].op) == ("s1", 2, "update")
    assert (await store.read("Observation", "s1")).version == 2


async def test_put_if_absent_never_overwrites(store):
    await store.put("Patient", "p1", {"resourceType": "Patient", "gender": "female"})

    async def job(tx: WriteTx):
        kept = tx.put("Patient", "p1", {"resourceType": "Patient"}, if_absent=True)
        new = tx.put("Patient", "p2", {"resourceType": "Patient", "gender": "male"}, if_absent=True)
        again = tx.put("Patient", "p2", {"resourceType": "Patient"}, if_absent=True)
        await tx.flush()
        return kept.skipped, new.written().version, again.skipped

    assert await store.write(job) == (True, 1, True)
    assert orjson.loads((await store.read("Patient", "p1")).body)["gender"] == "female"
    assert orjson.loads((await store.read("Patient", "p2")).body)["gender"] == "male"
    assert len(await store.changes(0)) == 2


async def test_a_minted_id_is_not_looked_up_but_never_overwrites(store):
    """Creates with a server-minted id skip the lookup of stored state; were the id ever taken,
    the unique (type, id) key fails that job alone and the stored resource stays as it was."""
    await store.put("Observation", "taken", obs("2.0"))

    async def clash(tx: WriteTx):
        tx.put("Observation", "taken", obs("9.0"), method="POST", must_not_exist=True, minted=True)

    async def fine(tx: WriteTx, i: int):
        tx.put("Observation", f"m{i}", obs(), method="POST", must_not_exist=True, minted=True)

    jobs = [store.write(clash)] + [store.write(lambda tx, i=i: fine(tx, i)) for i in range(4)]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(results[0], StorageError) and results[1:] == [None] * 4
    kept = await store.read("Observation", "taken")
    assert kept.version == 1 and orjson.loads(kept.body)["valueQuantity"]["value"] == 2.0
    assert [(await store.read("Observation", f"m{i}")).version for i in range(4)] == [1] * 4
    changes = await store.changes(0)
    assert [c.id for c in changes].count("taken") == 1 and len(changes) == 5


async def test_extra_rows_of_a_group_keep_their_order_and_columns(store):
    """Consecutive jobs' rows of one table share one insert (one statement on PostgreSQL): the
    rows keep the jobs' order, and a column one entry lacks is NULL, as when written alone."""
    from sqlalchemy import select

    from gateway.inbox.schema import inbox

    def row(i: int, **more) -> dict:
        return {"received_at": i, "peer": "", "sending_app": "a", "sending_facility": "f", "control_id": str(i),
                "message_type": "ORU^R01", "payload_hash": f"h{i}", "status": "accepted", "payload": b"x", **more}

    async def job(tx: WriteTx, i: int):
        tx.insert(inbox, [row(i, ack=b"a")] if i % 3 else [row(i, reason="r"), row(i + 100, reason=None)])
        tx.put("Observation", f"x{i}", obs())

    await asyncio.gather(*(store.write(lambda tx, i=i: job(tx, i)) for i in range(7)))
    c = inbox.c
    got = [tuple(r) for r in await store.fetch(select(c.received_at, c.reason, c.ack).order_by(c.pk))]
    expected = []
    for i in range(7):
        expected += [(i, None, b"a")] if i % 3 else [(i, "r", None), (i + 100, None, None)]
    assert got == expected


async def test_one_flush_updates_deletes_and_replaces_index_rows(store):
    """Updates, deletions and creates in one flush (one statement on PostgreSQL): the replaced
    index rows go, the new ones stay, the resource rows carry the last version."""
    from sqlalchemy import select

    from fhir_server.storage import schema as t

    def coded(code: str) -> dict:
        res = obs()
        res["code"] = {"coding": [{"system": "http://loinc.org", "code": code}]}
        return res

    async def first(tx: WriteTx):
        tx.put("Observation", "a", coded("old-a"))
        tx.put("Observation", "c", coded("old-c"))

    await store.write(first)

    async def second(tx: WriteTx):
        tx.put("Observation", "a", coded("new-a"))
        tx.put("Observation", "b", coded("new-b"))
        tx.delete("Observation", "c")

    await store.write(second)
    tok, r = t.INDEX_TABLES["token"].c, t.resource.c
    codes = await store.fetch(select(r.id, tok.code).join(t.resource, r.rid == tok.rid)
                              .where(tok.param == "Observation.code").order_by(r.id))
    assert [tuple(x) for x in codes] == [("a", "new-a"), ("b", "new-b")]
    rows = await store.fetch(select(r.id, r.version, r.deleted).order_by(r.id))
    assert [tuple(x) for x in rows] == [("a", 2, False), ("b", 1, False), ("c", 2, True)]
    assert orjson.loads((await store.read("Observation", "a")).body)["code"]["coding"][0]["code"] == "new-a"


async def test_migration_0002_indexes(store):
    from sqlalchemy import inspect

    async with store.engine.connect() as conn:
        names = await conn.run_sync(
            lambda c: {t: {i["name"] for i in inspect(c).get_indexes(t)} for t in ("idx_date", "resource")})
    assert "ix_date_rid_cover" in names["idx_date"] and "ix_date_rid" not in names["idx_date"]
    assert "ix_resource_type_updated" in names["resource"]


async def test_raw_rows_inside_the_transaction_see_its_writes(store):
    async def job(tx: WriteTx):
        tx.put("Patient", "p1", {"resourceType": "Patient"})
        return await tx.rows("SELECT id, version FROM resource WHERE type = ? AND id IN (?, ?)",
                             ["Patient", "p1", "p-none"])

    assert await store.write(job) == [("p1", 1)]
