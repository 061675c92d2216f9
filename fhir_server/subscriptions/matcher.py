"""The matcher: a change-log consumer that turns changes into numbered subscription events.

For each batch of change-log entries it keeps the registry current (SubscriptionTopic and
Subscription entries), runs the compiled topics and filters over the rest, and commits the
numbered events (``subscription_event``) together with its cursor in one transaction.
Only after that commit are the events handed to the delivery workers, so a number sent to
a receiver is always durable and never reused. Matching reads bodies in batches and never
writes to resources, so it cannot slow ingest beyond its own small commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from fhir_server.storage import Change, Store, WriteTx, loads

from .events import last_numbers
from .model import SubscriptionSpec
from .notifications import Event
from .registry import Registry
from .schema import MATCHER_CURSOR, subscription_event

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
        self._last_save = time.monotonic()

    async def start(self) -> None:
        self.cursor = self.saved = await self.store.cursor(MATCHER_CURSOR)
        self.numbers = await last_numbers(self.store)
        self._task = asyncio.create_task(self._run(), name="subscriptions-matcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                if not await self.step():
                    await self.store.wait_for_change(self.cursor, 0.5)
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed batch is retried from the same cursor
                log.exception("subscription matcher failed at seq %d; retrying", self.cursor)
                await asyncio.sleep(0.5)

    async def step(self) -> bool:
        """Process one batch; False when there was nothing new."""
        changes = await self.store.changes(self.cursor, self.batch)
        if not changes:
            if self.saved < self.cursor and time.monotonic() - self._last_save > self.idle_save:
                await self._commit([], self.cursor)
            return False
        reg = self.registry
        wanted = [c.vid for c in changes if c.op != "delete" and (c.type in _META or reg.watches(c.type))]
        bodies = await self.store.bodies(wanted) if wanted else {}
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
            elif reg.watches(c.type):
                for spec in reg.match(c, None if body is None else loads(body), await self._previous(c)):
                    n = numbers.get(spec.id) or self.numbers.get(spec.id, 0)
                    numbers[spec.id] = n = n + 1
                    ev = Event(n, c.seq, c.type, c.id, c.version, c.vid, c.op, c.ts, body)
                    out.setdefault(spec.id, []).append(ev)
                    rows.append({"sub_id": spec.id, "number": n, "seq": c.seq, "type": c.type, "res_id": c.id,
                                 "version": c.version, "vid": c.vid, "op": c.op, "ts": c.ts})
        last = changes[-1].seq
        if rows or time.monotonic() - self._last_save > self.idle_save:
            await self._commit(rows, last)
        self.cursor = last
        self.numbers.update(numbers)
        for sub_id, spec in touched.items():
            self.on_subscription(sub_id, spec)
        if out:
            self.on_events(out)
        return True

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
