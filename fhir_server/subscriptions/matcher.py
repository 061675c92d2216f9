"""The matcher: a change-log consumer that turns changes into numbered subscription events.

For each batch of change-log entries it keeps the registry current (SubscriptionTopic and
Subscription entries), runs the compiled topics and filters over the rest, and commits the
numbered events (``subscription_event``) together with its cursor in one transaction.
Numbers are a pure function of the change log: the registry is rebuilt as of the cursor
(``Registry.load``) and replays every later Subscription and SubscriptionTopic version in
log order, so a replay after a crash assigns exactly the numbers assigned before it. That
is what lets the events go to the delivery workers *while* their commit is in flight
(enqueued first, so it commits before any delivery position that depends on it): a crash
before that commit loses nothing, the replay re-creates the same numbered events, and the
receivers see at worst a repeat. The matcher waits for the commit before its next batch
and retries it with the same rows if it fails. It reads change-log entries and bodies in
one query and never writes resources, so it cannot slow ingest beyond its own small commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from fhir_server.errors import StorageError
from fhir_server.storage import Change, Store, WriteTx, loads
from fhir_server.storage import schema as t

from .events import last_numbers
from .model import SubscriptionSpec
from .notifications import Event
from .registry import Registry
from .schema import MATCHER_CURSOR, subscription_event
from .tail import ChangeTail

log = logging.getLogger(__name__)
EventSink = Callable[[dict[str, list[Event]]], None]
SubscriptionSink = Callable[[str, SubscriptionSpec | None], None]
_META = ("Subscription", "SubscriptionTopic")


class Matcher:
    def __init__(self, store: Store, registry: Registry, on_events: EventSink, on_subscription: SubscriptionSink,
                 *, batch: int = 1000, idle_save: float = 1.0) -> None:
        self.store = store
        self.registry = registry
        self.on_events = on_events
        self.on_subscription = on_subscription
        self.batch = batch
        self.idle_save = idle_save
        self.cursor = 0
        self.saved = 0
        self.numbers: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[None] | None = None
        self.tail = ChangeTail(store)
        self._poll = True  # the next read goes to the database (start-up, idle polls)
        self._last_save = time.monotonic()

    async def prepare(self) -> None:
        """Find the position to resume at (the registry is then loaded as of it)."""
        c = t.consumer_cursor.c
        saved = (await self.store.fetch(select(c.seq).where(c.name == MATCHER_CURSOR))).scalar()
        if saved is None:  # first start: what was written before there were subscriptions is history
            saved = await self.store.last_seq()
            await self._commit([], saved)
        self.cursor = self.saved = int(saved)
        self.numbers = await last_numbers(self.store)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="subscriptions-matcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.tail.close()

    async def _run(self) -> None:
        while True:
            try:
                if not await self.step():
                    # woken by a commit: its entries are in memory; after a quiet half second, poll the
                    # database too (entries another process wrote never wake us)
                    self._poll = await self.store.wait_for_change(self.cursor, 0.5) <= self.cursor
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed batch is retried from the same cursor
                log.exception("subscription matcher failed at seq %d; retrying", self.cursor)
                await asyncio.sleep(0.5)

    async def step(self) -> bool:
        """Process one batch; False when there was nothing new."""
        changes, bodies = await self._read()
        if not changes:
            if self.saved < self.cursor and time.monotonic() - self._last_save > self.idle_save:
                await self._commit([], self.cursor)
            return False
        reg = self.registry
        numbers: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        out: dict[str, list[Event]] = {}
        touched: dict[str, SubscriptionSpec | None] = {}
        for c in changes:
            body = bodies.get(c.vid)
            if c.type == "SubscriptionTopic":
                reg.apply_topic(c.id, c.version, None if c.op == "delete" else loads(body or b"{}"))
            elif c.type == "Subscription":
                res = None if c.op == "delete" else loads(body or b"{}")
                touched[c.id] = reg.apply_subscription(c.id, c.version, res, c.seq)
            elif reg.may_match(c, body):
                for spec in reg.match(c, None if body is None else loads(body), await self._previous(c)):
                    n = numbers.get(spec.id) or self.numbers.get(spec.id, 0)
                    numbers[spec.id] = n = n + 1
                    ev = Event(n, c.seq, c.type, c.id, c.version, c.vid, c.op, c.ts, body)
                    out.setdefault(spec.id, []).append(ev)
                    rows.append({"sub_id": spec.id, "number": n, "seq": c.seq, "type": c.type, "res_id": c.id,
                                 "version": c.version, "vid": c.vid, "op": c.op, "ts": c.ts})
        last = changes[-1].seq
        commit = None
        if rows or time.monotonic() - self._last_save > self.idle_save:
            commit = asyncio.ensure_future(self._commit(rows, last))  # queued at the writer now
        self.cursor = last
        self.numbers.update(numbers)
        for sub_id, spec in touched.items():
            self.on_subscription(sub_id, spec)
        if out:
            self.on_events(out)
        if commit is not None:
            self._inflight = asyncio.ensure_future(self._durable(commit, rows, last))
            await self._inflight
        return True

    async def settled(self) -> None:
        """Wait until every event handed to delivery so far is committed (for ``$events``)."""
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            await asyncio.shield(inflight)

    async def _read(self) -> tuple[list[Change], dict[int, bytes]]:
        poll, self._poll = self._poll, False
        return await self.tail.read(self.cursor, self.batch, memory=not poll)

    async def _durable(self, commit: asyncio.Future[None], rows: list[dict[str, Any]], seq: int) -> None:
        while True:
            try:
                await commit
                return
            except StorageError:
                log.exception("saving %d subscription events failed; retrying the same rows", len(rows))
                await asyncio.sleep(0.2)
                commit = asyncio.ensure_future(self._commit(rows, seq))

    async def _previous(self, c: Change) -> dict[str, Any] | None:
        if c.version <= 1 or (c.op != "delete" and not self.registry.needs_previous(c.type)):
            return None
        prev = await self.store.vread(c.type, c.id, c.version - 1)
        return None if prev is None or prev.deleted else loads(prev.body)

    async def _commit(self, rows: list[dict[str, Any]], seq: int) -> None:
        async def job(tx: WriteTx) -> None:
            if rows:
                tx.insert(subscription_event, rows)
            tx.advance_cursor(MATCHER_CURSOR, seq)

        await self.store.write(job)
        self.saved = seq
        self._last_save = time.monotonic()
