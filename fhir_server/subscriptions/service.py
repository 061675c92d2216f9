"""The subscription service: shipped topics, registry, matcher, delivery and the websocket hub.

``SubscriptionService(store)`` is usable on its own (tests, benchmarks);
``subscription_service(node)`` is the part ``gateway.app`` starts: it registers the
operations and write hook into ``node.extensions``, adds the websocket route to
``node.routers`` and runs the consumers until the node stops.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from fhir_server.core import Extensions
from fhir_server.storage import Store, WriteTx, loads

from .channels import RestHookSender, WebSocketHub
from .delivery import Delivery, DeliveryPolicy
from .events import last_number
from .internal import InternalSubscriber
from .matcher import Matcher
from .model import SubscriptionInvalid, SubscriptionSpec, parse_subscription
from .operations import register
from .registry import Registry
from .topics import shipped_topics
from .websocket import WS_PATH, websocket_router

log = logging.getLogger(__name__)


class SubscriptionService:
    def __init__(self, store: Store, *, base: str = "", policy: DeliveryPolicy | None = None,
                 token_ttl: float = 600.0) -> None:
        self.store = store
        self.base = base.rstrip("/")
        self.policy = policy or DeliveryPolicy()
        self.registry = Registry()
        self.hub = WebSocketHub(token_ttl)
        self.delivery = Delivery(store, self.policy, RestHookSender(self.policy.connections_per_endpoint),
                                 self.hub, self.base)
        self.matcher = Matcher(store, self.registry, self.delivery.on_events, self._on_subscription)
        self.delivery.settled = self.matcher.settled

    def register(self, ext: Extensions) -> None:
        register(ext, self)

    def router(self) -> Any:
        return websocket_router(self)

    def websocket_url(self, fhir_base: str) -> str:
        base = fhir_base.rstrip("/")
        if base.endswith("/fhir"):
            base = base[: -len("/fhir")]
        return base.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + WS_PATH

    async def start(self) -> None:
        await self.matcher.prepare()
        await install_topics(self.store)
        await self.registry.load(self.store, self.matcher.cursor)
        await self.delivery.start(list(self.registry.subs.values()), self.matcher.numbers)
        self.matcher.start()

    async def stop(self) -> None:
        await self.matcher.stop()
        await self.delivery.stop()

    def _on_subscription(self, sub_id: str, spec: SubscriptionSpec | None) -> None:
        self.delivery.on_subscription(sub_id, spec, self.matcher.numbers.get(sub_id, 0))

    async def events_since(self, sub_id: str) -> int:
        n = self.matcher.numbers.get(sub_id)
        return n if n is not None else await last_number(self.store, sub_id)

    async def spec(self, sub_id: str) -> SubscriptionSpec | None:
        """The registry's spec, or the stored resource's if the matcher has not applied it yet."""
        spec = self.registry.subs.get(sub_id)
        if spec is not None:
            return spec
        cur = await self.store.read("Subscription", sub_id)
        if cur is None or cur.deleted:
            return None
        try:
            return replace(parse_subscription(loads(cur.body), self.registry.topics), id=sub_id)
        except SubscriptionInvalid:
            return None

    def last_error(self, sub_id: str) -> str | None:
        w = self.delivery.workers.get(sub_id)
        return w.last_error if w is not None and w.failures else None

    async def internal(self, name: str, topic_url: str, filters: Sequence[str] = ()) -> InternalSubscriber:
        """An in-process subscriber with its own durable cursor (see ``internal``)."""
        return await InternalSubscriber.open(self.store, name, topic_url, filters)


async def install_topics(store: Store) -> None:
    """Store the shipped SubscriptionTopics that are missing or older than this release's."""
    todo = []
    for res in shipped_topics():
        cur = await store.read("SubscriptionTopic", res["id"])
        if cur is None or cur.deleted or loads(cur.body).get("version") != res["version"]:
            todo.append(res)
    if not todo:
        return

    async def job(tx: WriteTx) -> None:
        for res in todo:
            tx.put("SubscriptionTopic", res["id"], res, method="PUT")

    await store.write(job)


@contextlib.asynccontextmanager
async def subscription_service(node: Any) -> AsyncIterator[SubscriptionService]:
    """The ``gateway.app`` part: extensions and websocket route in, consumers running."""
    svc = SubscriptionService(node.store, base=node.settings.fhir_base)
    svc.register(node.extensions)
    node.routers.append(svc.router())
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()
