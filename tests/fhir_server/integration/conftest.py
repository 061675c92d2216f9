from __future__ import annotations

import httpx
import pytest

from fhir_server.api import create_app

BASE = "http://testserver/fhir"


@pytest.fixture
async def client(store):
    app = create_app(store, BASE)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/",
                                 headers={"content-type": "application/fhir+json"}) as c:
        yield c
