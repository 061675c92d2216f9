"""The internal channel: topic matching from a durable cursor, committed with the consumer's effects."""

from __future__ import annotations

import pytest

from fhir_server.errors import StorageError
from fhir_server.storage import WriteTx
from fhir_server.subscriptions import InternalSubscriber
from fhir_server.subscriptions.topics import TOPIC_BASE

from .helpers import observation


async def _put_obs(store, n: int, patient: str = "p1", start: int = 0) -> None:
    async def job(tx: WriteTx) -> None:
        for i in range(start, start + n):
            tx.put("Observation", f"o{i}", observation(patient, value=i), method="PUT")

    await store.write(job)


async def test_matched_resources_resume_after_the_committed_cursor(store):
    sub = await InternalSubscriber.open(store, "inference-test", TOPIC_BASE + "observation",
                                        ["Observation?patient=Patient/p1"])
    await _put_obs(store, 3)
    await _put_obs(store, 2, patient="p2", start=3)
    batch = await sub.next_batch(0.1)
    assert [m.resource["valueQuantity"]["value"] for m in batch.matches] == [0, 1, 2]
    assert all(m.change.op == "create" for m in batch.matches)

    async def effects(tx: WriteTx) -> None:  # the consumer's own write and its cursor, in one transaction
        tx.put("Flag", "seen", {"resourceType": "Flag", "status": "active", "code": {"text": "seen"},
                                "subject": {"reference": "Patient/p1"}}, method="PUT")
        batch.advance(tx)

    await store.write(effects)
    await _put_obs(store, 1, start=10)
    again = await InternalSubscriber.open(store, "inference-test", TOPIC_BASE + "observation",
                                          ["Observation?patient=Patient/p1"])  # a restart
    batch = await again.next_batch(0.1)
    assert [m.change.id for m in batch.matches] == ["o10"]
    assert await again.next_batch(0.05) is None


async def test_unknown_topic_and_bad_filter_are_refused(store):
    with pytest.raises(StorageError):
        await InternalSubscriber.open(store, "x", "http://example.org/none")
    with pytest.raises(ValueError, match="not allowed"):
        await InternalSubscriber.open(store, "x", TOPIC_BASE + "observation", ["Observation?status=final"])
