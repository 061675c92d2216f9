from __future__ import annotations

import httpx
import pytest

from fhir_server.api import create_app
from fhir_server.core import Extensions
from fhir_server.subscriptions import DeliveryPolicy, SubscriptionService
from fhir_server.subscriptions.receiver import Receiver

BASE = "http://testserver/fhir"
FAST = DeliveryPolicy(error_after=3, backoff_base=0.02, backoff_cap=0.1)


class Node:
    """A started SubscriptionService plus an in-process HTTP client on the FHIR app."""

    def __init__(self, store, policy=FAST) -> None:
        self.store = store
        self.svc = SubscriptionService(store, base=BASE, policy=policy)
        self.ext = Extensions()
        self.svc.register(self.ext)
        self.app = create_app(store, BASE, extensions=self.ext)
        self.app.include_router(self.svc.router())
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE + "/",
                                        headers={"content-type": "application/fhir+json"})

    async def __aenter__(self) -> Node:
        await self.svc.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.aclose()
        await self.svc.stop()


@pytest.fixture
async def node(store):
    async with Node(store) as n:
        yield n


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()
