"""The internal channel: in-process code (the inference engine) subscribes to a topic.

An ``InternalSubscriber`` is a change-log consumer with its own durable cursor
(``consumer_cursor`` row ``name``): the same topic triggers and filters as any Subscription,
but the matched resources are handed over directly, without notification Bundles or event
numbers. Commit the effects and ``batch.advance(tx)`` in one transaction (or call ``ack``)
and nothing is lost or processed twice across a restart::

    sub = await InternalSubscriber.open(store, "inference", OBSERVATION_TOPIC,
                                        ["Observation?category=vital-signs"])
    async for batch in sub:
        await store.write(lambda tx: (write_alerts(tx, batch.matches), batch.advance(tx)))
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import StorageError
from fhir_server.storage import Change, Store, WriteTx, loads

from .criteria import Criteria, IndexedResource
from .events import find_topic
from .topics import Topic, compile_topic, shipped_topics


@dataclass(frozen=True)
class Matched:
    change: Change
    resource: dict[str, Any] | None  # None for a deletion
    previous: dict[str, Any] | None = None


@dataclass(frozen=True)
class Batch:
    name: str
    matches: list[Matched]
    last_seq: int  # the cursor to commit once the matches are handled (covers non-matching entries too)

    def advance(self, tx: WriteTx) -> None:
        tx.advance_cursor(self.name, self.last_seq)


class InternalSubscriber:
    def __init__(self, store: Store, name: str, topic: Topic, filters: Sequence[str] = (), batch: int = 500) -> None:
        self.store = store
        self.name = name
        self.topic = topic
        self.filters: tuple[Criteria, ...] = tuple(topic.compile_filter(f) for f in filters)
        self.batch = batch
        self.position: int | None = None

    @classmethod
    async def open(cls, store: Store, name: str, topic_url: str, filters: Sequence[str] = (),
                   batch: int = 500) -> InternalSubscriber:
        """Subscribe ``name`` to a shipped or stored topic (raises StorageError if unknown)."""
        for res in shipped_topics():
            if res["url"] == topic_url:
                return cls(store, name, compile_topic(res), filters, batch)
        topic = await find_topic(store, topic_url)
        if topic is None:
            raise StorageError(f"no SubscriptionTopic {topic_url}")
        return cls(store, name, topic, filters, batch)

    async def next_batch(self, timeout: float = 1.0) -> Batch | None:
        """Matches after the cursor (possibly none, with ``last_seq`` moved on), or None if idle."""
        if self.position is None:
            self.position = await self.store.cursor(self.name)
        types = sorted(self.topic.resource_types)
        changes = await self.store.changes(self.position, self.batch, types)
        if not changes:
            await self.store.wait_for_change(self.position, timeout)
            changes = await self.store.changes(self.position, self.batch, types)
            if not changes:
                return None
        bodies = await self.store.bodies([c.vid for c in changes if c.op != "delete"])
        out = []
        for c in changes:
            m = await self._match(c, bodies.get(c.vid))
            if m is not None:
                out.append(m)
        self.position = changes[-1].seq
        return Batch(self.name, out, changes[-1].seq)

    async def _match(self, c: Change, body: bytes | None) -> Matched | None:
        cur = loads(body) if body is not None else None
        triggers = [t for t in self.topic.triggers if t.resource_type == c.type]
        prev = None
        if c.version > 1 and (c.op == "delete" or any(t.needs_previous for t in triggers)):
            p = await self.store.vread(c.type, c.id, c.version - 1)
            prev = loads(p.body) if p is not None and not p.deleted else None
        local = self.topic.local_params
        cur_idx = IndexedResource.of(c.type, cur, local) if cur is not None else None
        prev_idx = IndexedResource.of(c.type, prev, local) if prev is not None else None
        if not any(t.fires(c.op, cur_idx, prev_idx, cur, prev) for t in triggers):
            return None
        focus = cur_idx or prev_idx
        if focus is None or not all(f.matches(focus) for f in self.filters if f.resource_type == c.type):
            return None
        return Matched(c, cur, prev)

    async def ack(self, batch: Batch) -> None:
        await self.store.advance_cursor(self.name, batch.last_seq)

    async def __aiter__(self) -> AsyncIterator[Batch]:
        while True:
            batch = await self.next_batch()
            if batch is not None:
                yield batch
