"""Delivery: one task per subscription, ordered, at-least-once, with backoff and error state.

Each worker sends its subscription's events in number order (up to ``max_count`` per
Bundle) and records the last number written in a ``consumer_cursor`` row
(``subscription:<id>``) after the send, so a crash re-sends at most the last Bundle: event
numbers let receivers drop repeats. Events arrive in memory from the matcher right after
their commit; a worker that is behind (restart, dead endpoint, bounded memory) reads them
back from ``subscription_event``.

Fan-out: the matcher's events for an idle, active subscription (everything before them
delivered) are rendered right in ``Delivery.on_events``, one pass over all matching
subscriptions, without waking their tasks: rest-hook requests go to the HTTP client at once
(pipelined per endpoint), websocket frames straight to the sockets that take them at once
(the rest by one task for the whole fan-out).
The worker's task only steps in for what that path cannot do (backlog, handshakes,
heartbeats, failures).

Failures back off exponentially with jitter; after ``error_after`` consecutive failures the
Subscription is set to ``error`` (with the reason in ``Subscription.error``) and retried at
the capped interval, and set back to ``active`` by the first success. A rest-hook
subscription in ``requested`` is sent a handshake first; a websocket one is activated
directly and handshaken on each bind. Heartbeats go out when ``heartbeatPeriod`` passes
without a notification. Workers share nothing but the store, so a slow endpoint delays
only its own subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from fhir_server.errors import StorageError
from fhir_server.storage import Store, WriteTx, loads

from .events import delivered_positions, load_events
from .model import SubscriptionSpec
from .notifications import Event, FanOutRenderer, notification
from .schema import delivery_cursor

if TYPE_CHECKING:
    from .channels import RestHookSender, WebSocketHub

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryPolicy:
    error_after: int = 5  # consecutive failures before status ``error``
    backoff_base: float = 0.5  # seconds
    backoff_cap: float = 60.0
    connections_per_endpoint: int = 32
    memory_events: int = 10_000  # per subscription; beyond, the backlog is read from the database

    def backoff(self, failures: int) -> float:
        d: float = min(self.backoff_cap, self.backoff_base * 2.0 ** max(0, failures - 1))
        return d * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


class CursorSaver:
    """Batches delivery positions into one write at most every ``interval`` seconds.

    A position that lags after a crash only means the last notifications are sent again
    (receivers drop repeats by event number); saving each one would cost the writer one
    upsert per subscription per event, 1,000 per probe in a 1,000-way fan-out.
    """

    def __init__(self, store: Store, settled: Callable[[], Awaitable[None]], interval: float = 0.5) -> None:
        self.store = store
        self.settled = settled
        self.interval = interval
        self._dirty: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="subscription-cursors")

    def mark(self, sub_id: str, number: int) -> None:
        self._dirty[delivery_cursor(sub_id)] = number
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(self.interval)

    async def flush(self) -> None:
        if not self._dirty:
            return
        await self.settled()  # a position is saved after the events it counts (see Delivery)
        dirty, self._dirty = self._dirty, {}

        async def job(tx: WriteTx) -> None:
            for name, n in dirty.items():
                tx.advance_cursor(name, n)

        try:
            await self.store.write(job)
        except StorageError:
            log.exception("saving %d delivery positions failed; retrying", len(dirty))
            for k, v in dirty.items():
                self._dirty.setdefault(k, v)
            await asyncio.sleep(0.5)
            self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()


class Worker:
    def __init__(self, owner: Delivery, spec: SubscriptionSpec, delivered: int, last: int) -> None:
        self.owner = owner
        self.spec = spec
        self.delivered = delivered
        self.last = last  # highest number assigned
        self.failures = 0
        self.last_error: str | None = None
        self._pending: dict[int, Event] = {}
        self.parked = False  # the task waits for work with nothing to send: the fan-out may send for it
        self.inflight = False  # a fan-out send for this subscription is on its way
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"subscription-{spec.id}")

    # -- inputs -------------------------------------------------------------------------------
    def push(self, events: list[Event]) -> None:
        if len(self._pending) < self.owner.policy.memory_events:
            for e in events:
                if e.number > self.delivered:
                    self._pending[e.number] = e
        self.last = max(self.last, events[-1].number)
        self._wake.set()

    def update(self, spec: SubscriptionSpec) -> None:
        if spec.version >= self.spec.version:
            self.spec = spec
        self._changed.set()
        self._wake.set()

    def poke(self) -> None:
        self._wake.set()

    def send_now(self, events: list[Event], render: FanOutRenderer,
                 sockets: list[tuple[Worker, list[Event], bytes]]) -> bool:
        """The fan-out path: send ``events`` from the caller, without waking this task.

        Only for an active subscription whose task is parked with everything before these
        events delivered, so order holds. A rest-hook's request goes to the HTTP client at
        once; a websocket's frame to its sockets' transports when they take it at once, else
        the Bundle is appended to ``sockets`` for one task to send. A failure hands the events
        back to the task, which retries them with the usual backoff and error accounting."""
        spec = self.spec
        if not (self.parked and not self.inflight and self.failures == 0 and spec.status == "active"
                and events[0].number == self.delivered + 1 and len(events) <= spec.max_count
                and not self._pending):
            return False
        if spec.channel == "websocket" and not self.owner.hub.is_bound(spec.id):
            return False
        body = render.render(spec, max(self.last, events[-1].number), events)
        if spec.channel != "websocket":
            try:
                fut = self.owner.rest.submit(spec, body)
            except Exception:  # noqa: BLE001 - e.g. an endpoint it cannot send to: the task reports it
                return False
            fut.add_done_callback(lambda f: self.sent_now(_answered_2xx(f), events))
        self.last = max(self.last, events[-1].number)
        self.inflight = True
        if spec.channel == "websocket":
            try:  # written as rendered: the first of a 1,000-way fan-out no longer waits for the last render
                written = self.owner.hub.write_now(spec.id, body)
            except Exception:  # noqa: BLE001 - the awaited path finds out and unbinds a broken socket
                log.debug("websocket fan-out write failed", exc_info=True)
                written = False
            if written:
                self.sent_now(True, events)
            else:
                sockets.append((self, events, body))
        return True

    def sent_now(self, ok: bool, events: list[Event]) -> None:
        """The outcome of ``send_now``."""
        self.inflight = False
        if self.task.done():  # the subscription was deleted meanwhile
            return
        if ok and self.delivered == events[0].number - 1:
            if self.owner.on_delivered is not None:
                self.owner.on_delivered(self.spec.id, events, time.perf_counter())
            self.delivered = events[-1].number
            self.owner.cursors.mark(self.spec.id, self.delivered)
            if self.delivered < self.last or self.spec.heartbeat or not self.parked:
                self._wake.set()  # more came meanwhile, the heartbeat period starts again, or the task waits on us
            return
        for e in events:  # failed: the task sends them again (and counts the failure)
            if e.number > self.delivered:
                self._pending[e.number] = e
        self._wake.set()

    # -- the loop -----------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one subscription's bug stop its delivery for good
                log.exception("subscription %s delivery step failed", self.spec.id)
                await self._sleep(self.owner.policy.backoff(max(1, self.failures)))

    async def _step(self) -> None:
        spec = self.spec
        if self.inflight:  # the fan-out path is sending for us: wait for its outcome
            await self._wait(None)
            return
        if spec.status == "off":
            await self._wait(None)
            return
        if spec.channel == "websocket":
            if spec.status == "requested":
                await self._set_status("active", None)
            if not self.owner.hub.is_bound(spec.id):
                await self._wait(None)
                return
        elif spec.status == "requested":
            await self._attempt(notification(spec, "handshake", self.last, base=self.owner.base,
                                             status="requested"), activate=True)
            return
        if self.delivered < self.last:
            events = await self._next_batch()
            body = notification(spec, "event-notification", self.last, events, self.owner.base)
            if await self._attempt(body):
                if self.owner.on_delivered is not None:
                    self.owner.on_delivered(spec.id, events, time.perf_counter())
                self.delivered = events[-1].number
                for e in events:
                    self._pending.pop(e.number, None)
                self.owner.cursors.mark(spec.id, self.delivered)
            return
        self.parked = True
        try:
            woken = await self._wait(spec.heartbeat)
        finally:
            self.parked = False
        if not woken and not self.inflight:
            await self._attempt(notification(spec, "heartbeat", self.last, base=self.owner.base))

    async def _next_batch(self) -> list[Event]:
        spec, start = self.spec, self.delivered + 1
        events: list[Event] = []
        n = start
        while n in self._pending and len(events) < spec.max_count:
            events.append(self._pending[n])
            n += 1
        if events:
            return events
        self._pending = {k: v for k, v in self._pending.items() if k > self.delivered}
        await self.owner.settled()
        loaded = await load_events(self.owner.store, spec.id, self.delivered, self.last, spec.max_count,
                                   bodies=spec.content == "full-resource")
        if not loaded:
            raise RuntimeError(f"events {start}..{self.last} of subscription {spec.id} not found")
        return loaded

    async def _attempt(self, body: bytes, activate: bool = False) -> bool:
        spec = self.spec
        if spec.channel == "websocket":
            err = await self.owner.hub.send(spec.id, body)
            if err is not None:
                return False  # unbound meanwhile: wait for the next bind, no failure counted
        else:
            err = await self.owner.rest.post(spec, body)
        if err is None:
            self.failures = 0
            if activate or spec.status != "active":
                await self._set_status("active", None)
            return True
        self.failures += 1
        self.last_error = err
        log.warning("subscription %s: delivery failed (%d in a row): %s", spec.id, self.failures, err)
        if self.failures >= self.owner.policy.error_after and spec.status != "error":
            await self._set_status("error", f"{self.failures} failed deliveries, last: {err}")
        await self._sleep(self.owner.policy.backoff(self.failures))
        return False

    async def _set_status(self, status: str, error: str | None) -> None:
        sid = self.spec.id

        async def job(tx: WriteTx) -> int | None:
            from fhir_server.core.crud import read_version

            cur = await read_version(tx, "Subscription", sid)
            if cur is None or cur.deleted:
                return None
            res = loads(cur.body)
            if res.get("status") in (status, "off") and res.get("error") == error:
                return cur.version
            res["status"] = status
            res.pop("error", None)
            if error:
                res["error"] = error
            tx.put("Subscription", sid, res, method="PUT", if_match=cur.version)
            return cur.version + 1  # flushed with the rest of the group: no round trip per status

        try:
            version = await self.owner.store.write(job)
        except StorageError as exc:  # a concurrent client update: the change log brings the new spec
            log.info("subscription %s: status %s not saved (%s)", sid, status, exc)
            return
        if version is not None and self.spec.status != "off":
            self.spec = replace(self.spec, status=status, version=max(version, self.spec.version))

    async def _wait(self, timeout: float | None) -> bool:
        """Wait for new work; False when ``timeout`` passed without any."""
        try:  # asyncio.timeout, not wait_for: no extra task per wait across 1,000 workers
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            return False
        finally:
            self._wake.clear()
        return True

    async def _sleep(self, seconds: float) -> None:
        """Back off, but wake early when the subscription itself changes (new endpoint, off)."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._changed.wait()


async def _nothing_pending() -> None:
    return None


def _answered_2xx(fut: asyncio.Future[int]) -> bool:
    return not fut.cancelled() and fut.exception() is None and 200 <= fut.result() < 300


class Delivery:
    """Owns the workers: one per live subscription, created and updated from the matcher."""

    def __init__(self, store: Store, policy: DeliveryPolicy, rest: RestHookSender, hub: WebSocketHub,
                 base: str = "") -> None:
        self.store = store
        self.policy = policy
        self.rest = rest
        self.hub = hub
        self.base = base
        # Waits until the events handed over so far are committed (the matcher sets it): delivery
        # gets events before their rows commit, so it waits before reading rows back and before
        # saving a position.
        self.settled: Callable[[], Awaitable[None]] = _nothing_pending
        self.cursors = CursorSaver(store, lambda: self.settled())
        self.workers: dict[str, Worker] = {}
        self._fanouts: set[asyncio.Task[None]] = set()
        # Metrics hook: (subscription id, events, perf_counter when the endpoint took them).
        self.on_delivered: Callable[[str, list[Event], float], None] | None = None
        hub.on_bind = self._on_bind

    async def start(self, specs: list[SubscriptionSpec], numbers: dict[str, int]) -> None:
        positions = await delivered_positions(self.store, delivery_cursor(""))
        for spec in specs:
            self.workers[spec.id] = Worker(self, spec, positions.get(spec.id, 0), numbers.get(spec.id, 0))
        self.cursors.start()

    def on_subscription(self, sub_id: str, spec: SubscriptionSpec | None, last: int = 0) -> None:
        w = self.workers.get(sub_id)
        if spec is None:
            if w is not None:
                w.task.cancel()
                del self.workers[sub_id]
        elif w is None:
            self.workers[sub_id] = Worker(self, spec, 0, last)
        else:
            w.update(spec)

    def on_events(self, events: dict[str, list[Event]]) -> None:
        """New events from the matcher. An idle subscription's are sent right here, in one pass
        over all of them (a 1,000-way fan-out is one loop, not 1,000 task wake-ups): rest-hook
        requests are pipelined per endpoint, websocket frames written straight to the sockets
        that take them at once; any other worker is woken to send its own.

        The pass runs with the cyclic collector held off: its ~10 allocations a subscriber were
        what triggered collections, and a full one (~120 ms with 1,000 bound sockets in the
        collector's sight) landed between the first and the last notification. The collection
        the pass makes due runs right after it, once every frame is on its way."""
        if gc.isenabled():
            gc.disable()
            try:
                self._fan_out(events)
            finally:
                gc.enable()
        else:
            self._fan_out(events)

    def _fan_out(self, events: dict[str, list[Event]]) -> None:
        """Websocket frames go straight to the transports that take them at once (a frame ~5 us of
        Python, against ~55 us through the ASGI stack); the rest to ``_write_sockets``."""
        later: list[tuple[Worker, list[Event], bytes]] = []
        render = FanOutRenderer(self.base)
        for sub_id, evs in events.items():
            w = self.workers.get(sub_id)
            if w is not None and not w.send_now(evs, render, later):
                w.push(evs)
        if later:
            task = asyncio.create_task(self._write_sockets(later), name="subscription-fanout")
            self._fanouts.add(task)
            task.add_done_callback(self._fanouts.discard)

    async def _write_sockets(self, sockets: list[tuple[Worker, list[Event], bytes]]) -> None:
        """One task writes the websocket Bundles of a fan-out that could not go at once, socket
        after socket, awaiting each send."""
        for i, (w, events, body) in enumerate(sockets):
            try:
                err = await self.hub.send(w.spec.id, body)
            except asyncio.CancelledError:
                for rest in sockets[i:]:
                    rest[0].sent_now(False, rest[1])
                raise
            except Exception:  # noqa: BLE001 - the worker retries and reports
                log.debug("websocket fan-out write failed", exc_info=True)
                err = "write failed"
            w.sent_now(err is None, events)

    def _on_bind(self, sub_id: str) -> None:
        w = self.workers.get(sub_id)
        if w is not None:
            w.poke()

    async def stop(self) -> None:
        for task in list(self._fanouts):
            task.cancel()
        workers, self.workers = list(self.workers.values()), {}
        for w in workers:
            w.task.cancel()
        await asyncio.gather(*(w.task for w in workers), return_exceptions=True)
        await self.cursors.stop()
        await self.rest.close()
