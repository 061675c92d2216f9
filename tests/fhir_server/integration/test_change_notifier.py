"""The notifier's in-memory change-log entries equal the stored log, and never paper over a gap."""

from __future__ import annotations

import asyncio

from fhir_server.storage import Store, WriteTx, loads, make_engine

from .test_store import obs


async def _stored(store: Store, after: int) -> list[tuple[object, bytes]]:
    changes = await store.changes(after, limit=10_000)
    bodies = await store.bodies([c.vid for c in changes])
    return [(c, bodies[c.vid]) for c in changes]


def _logged(held):
    return [(c, b) for c, b, _ in held]


async def test_recent_is_what_was_committed(store):
    start = store.notifier.seq
    assert store.notifier.recent(start, 100) == []  # caught up, nothing held yet

    async def job(tx: WriteTx):
        tx.put("Observation", "a", obs("1"))
        tx.put("Observation", "b", obs("2"))
        tx.put("Patient", "p1", {"resourceType": "Patient"}, if_absent=True)
        await tx.flush()
        tx.put("Observation", "a", obs("3"))  # a second flush in the same transaction
        tx.delete("Observation", "b")
        tx.delete("Observation", "never-written")  # nothing to delete: no entry

    await store.write(job)
    await store.put("Observation", "c", obs("4"))
    held = store.notifier.recent(start, 100)
    assert _logged(held) == await _stored(store, start)
    assert [c.op for c, _, _ in held] == ["create", "create", "create", "update", "delete", "create"]
    assert store.notifier.recent(start + 2, 2) == held[2:4]
    assert store.notifier.recent(held[-1][0].seq, 100) == []


async def test_recent_refuses_what_it_does_not_hold(store, db_url):
    await store.put("Observation", "a", obs("1"))
    first = store.notifier.seq
    assert store.notifier.recent(first - 1, 10) is not None
    assert store.notifier.recent(first - 2, 10) is None  # older than memory: read the log

    other = Store(make_engine(db_url))  # another process writing the same database
    await other.start()
    try:
        await other.put("Observation", "x", obs("2"))
    finally:
        await other.close()
    await store.put("Observation", "b", obs("3"))
    assert store.notifier.recent(first, 10) is None  # the other writer's entry lies in between
    tail = store.notifier.recent(store.notifier.seq - 1, 10)
    assert _logged(tail) == (await _stored(store, store.notifier.seq - 1))


class _Writer:
    """Holds the writer's transaction open (``await hold()`` ... ``await release()``) while
    writes queue behind it; ``put`` returns the seq of a one-Observation write."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._holding, self._release = asyncio.Event(), asyncio.Event()
        self._busy: asyncio.Task[object] | None = None

    async def hold(self) -> None:
        self._holding.clear()
        self._release.clear()

        async def busy(tx: WriteTx) -> None:
            tx.put("Observation", "busy", obs("0"))
            self._holding.set()
            await self._release.wait()  # the writer's transaction in progress

        self._busy = asyncio.create_task(self.store.write(busy))
        await self._holding.wait()

    async def release(self) -> None:
        assert self._busy is not None
        self._release.set()
        await self._busy

    def put(self, id_: str, **kind: bool) -> asyncio.Task[int]:
        async def job(tx: WriteTx):
            return tx.put("Observation", id_, obs("1"))

        async def write() -> int:
            return (await self.store.write(job, **kind)).written().seq

        return asyncio.create_task(write())


async def test_an_urgent_write_commits_before_the_queued_ones(store):
    writer = _Writer(store)
    await writer.hold()
    queued = [writer.put(f"ingest-{i}") for i in range(5)]
    await asyncio.sleep(0.01)
    alert = writer.put("alert", urgent=True)
    await asyncio.sleep(0.01)
    await writer.release()
    seqs = await asyncio.gather(*queued)
    assert await alert < min(seqs)


async def test_bulk_writes_commit_alone_and_take_turns(store):
    """A device batch (bulk) never shares a transaction with the jobs an MLLP sender waits on,
    and when both kinds wait they alternate: neither waits for more than one group of the other."""
    writer = _Writer(store)
    await writer.hold()
    bulk = [writer.put(f"device-{i}", bulk=True) for i in range(2)]
    await asyncio.sleep(0.01)
    acked = [writer.put(f"mllp-{i}") for i in range(3)]
    await asyncio.sleep(0.01)
    commits = store.commits
    await writer.release()
    bulk_seqs, acked_seqs = await asyncio.gather(*bulk), await asyncio.gather(*acked)
    # the busy group was a group of the others: the queued bulk jobs go next, together, alone;
    # then the jobs queued behind them, in a group of their own
    assert store.commits == commits + 3
    assert max(bulk_seqs) < min(acked_seqs)
    assert sorted(bulk_seqs) == list(range(min(bulk_seqs), min(bulk_seqs) + 2))

    await writer.hold()
    acked = [writer.put(f"mllp-b{i}") for i in range(3)]
    await asyncio.sleep(0.01)
    late_bulk = writer.put("device-b", bulk=True)
    await asyncio.sleep(0.01)
    await writer.release()
    # the others had their group (busy) last: now the bulk job's turn, even though it came last
    assert await late_bulk < min(await asyncio.gather(*acked))


async def test_recent_hands_over_the_written_dict_when_it_names_the_resource(store):
    start = store.notifier.seq
    named = {**obs("72"), "resourceType": "Observation", "id": "named"}
    await store.put("Observation", "named", named)
    await store.put("Observation", "unnamed", obs("73"))  # no id in the dict: the body only
    await store.put("Observation", "other", {**obs("74"), "id": "not-other"})
    async def delete(tx: WriteTx) -> None:
        tx.delete("Observation", "named")

    await store.write(delete)
    held = store.notifier.recent(start, 10)
    assert [(c.id, c.op) for c, _, _ in held] == [("named", "create"), ("unnamed", "create"),
                                                  ("other", "create"), ("named", "delete")]
    assert held[0][2] is named  # the writer's own object: nothing copied, nothing parsed
    stored = {k: v for k, v in loads(held[0][1]).items() if k != "meta"}
    assert stored == named  # the same content as the stored body, meta apart
    assert [res for _, _, res in held[1:]] == [None, None, None]
