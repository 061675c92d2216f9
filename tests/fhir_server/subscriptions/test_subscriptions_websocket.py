"""The node's subscription part over a real uvicorn: websocket binding, notifications, heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import httpx
import orjson
import pytest
import uvicorn
import websockets

from fhir_server.subscriptions import subscription_service
from fhir_server.subscriptions.receiver import event_numbers
from fhir_server.subscriptions.ws_protocol import NODE_WS_CONFIG
from gateway.app import build_app, running_node
from gateway.settings import Settings

from .helpers import observation, status_of, subscription


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _served(tmp_path, **ws_config):
    port = _free_port()
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/ws.db", http_port=port, log_level="WARNING")
    async with running_node(settings, [("subscriptions", subscription_service)]) as node:
        server = uvicorn.Server(uvicorn.Config(build_app(node), host="127.0.0.1", port=port, lifespan="off",
                                               log_level="warning", **ws_config))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        base = f"http://127.0.0.1:{port}/fhir"
        try:
            async with httpx.AsyncClient(base_url=base + "/", timeout=30,  # the first validation imports models
                                         headers={"content-type": "application/fhir+json"}) as c:
                yield node, c
        finally:
            server.should_exit = True
            await task


async def _recv(ws, timeout: float = 5.0) -> dict:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def test_websocket_bind_handshake_events_and_heartbeat(tmp_path):
    async with _served(tmp_path) as (node, client):
        sub = subscription(filters=("Observation?patient=Patient/p1",), channel="websocket", heartbeat=1)
        r = await client.post("Subscription", json=sub)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        await client.post("Observation", json=observation("p1", value=60))  # before any bind: kept, sent later

        params = {p["name"]: p for p in (await client.post(f"Subscription/{sid}/$get-ws-binding-token")).json()[
            "parameter"]}
        url = params["websocket-url"]["valueUrl"]
        assert url.startswith("ws://127.0.0.1:") and params["subscription"]["valueString"] == sid
        async with websockets.connect(url) as ws:
            await ws.send("bind-with-token: nonsense")
            assert (await _recv(ws))["resourceType"] == "OperationOutcome"
            await ws.send(f"bind-with-token: {params['token']['valueString']}")
            hello = await _recv(ws)
            assert status_of(hello)["type"] == "handshake"
            first = await _recv(ws)
            assert event_numbers([first]) == [1] and first["entry"][1]["resource"]["valueQuantity"]["value"] == 60
            await client.post("Observation", json=observation("p2", value=70))
            await client.post("Observation", json=observation("p1", value=61))
            second = await _recv(ws)
            assert event_numbers([second]) == [2] and second["entry"][1]["resource"]["valueQuantity"]["value"] == 61
            beat = await _recv(ws, 3.0)
            assert status_of(beat)["type"] == "heartbeat" and status_of(beat)["eventsSinceSubscriptionStart"] == "2"
        assert (await client.get(f"Subscription/{sid}")).json()["status"] == "active"

        rest = (await client.post("Subscription", json=subscription(endpoint="http://127.0.0.1:9/x"))).json()["id"]
        r = await client.get(f"Subscription/$get-ws-binding-token?id={sid},{rest}")
        assert r.status_code == 422 and "not a websocket" in r.text


@pytest.mark.parametrize("deflate", [False, True], ids=["node-config", "client-negotiated-deflate"])
async def test_websocket_fanout_writes_frames_straight_to_the_transports(tmp_path, deflate):
    """Under the node's uvicorn settings a fan-out writes its frames without the ASGI send; each
    socket still gets its own subscription's Bundle, in order, compressed where negotiated."""
    async with _served(tmp_path, **{**NODE_WS_CONFIG, "ws_per_message_deflate": deflate}) as (node, client):
        hub = node.services["subscriptions"].hub
        sids = []
        for _ in range(12):
            r = await client.post("Subscription", json=subscription(filters=("Observation?patient=Patient/p1",),
                                                                    channel="websocket"))
            sids.append(r.json()["id"])
        tokens = {}
        for sid in sids[:-2]:
            p = (await client.post(f"Subscription/{sid}/$get-ws-binding-token")).json()["parameter"]
            tokens[sid] = next(x["valueString"] for x in p if x["name"] == "token")
        p = (await client.get(f"Subscription/$get-ws-binding-token?id={sids[-2]},{sids[-1]}")).json()["parameter"]
        url = next(x["valueUrl"] for x in p if x["name"] == "websocket-url")
        tokens[f"{sids[-2]},{sids[-1]}"] = next(x["valueString"] for x in p if x["name"] == "token")

        async with contextlib.AsyncExitStack() as stack:
            sockets = {}
            for key, token in tokens.items():
                ws = await stack.enter_async_context(websockets.connect(url))
                await ws.send(f"bind-with-token: {token}")
                for _ in key.split(","):
                    assert status_of(await _recv(ws))["type"] == "handshake"
                sockets[key] = ws
            assert all(b.frames is not None for sid in sids for b in hub._bound[sid])
            assert all((ws.protocol.extensions != []) == deflate for ws in sockets.values())

            for value in (60, 61):
                await client.post("Observation", json=observation("p1", value=value))
            for key, ws in sockets.items():
                got = [await _recv(ws) for _ in range(2 * len(key.split(",")))]
                by_sub: dict[str, list[dict]] = {}
                for bundle in got:
                    by_sub.setdefault(status_of(bundle)["subscription"]["reference"].rsplit("/", 1)[1], []).append(
                        bundle)
                assert sorted(by_sub) == sorted(key.split(","))
                for bundles in by_sub.values():
                    assert [event_numbers([b]) for b in bundles] == [[1], [2]]
                    assert [b["entry"][1]["resource"]["valueQuantity"]["value"] for b in bundles] == [60, 61]

            assert hub.write_now(sids[0], b'{"written": "now"}')  # synchronously, no awaited send
            assert await _recv(sockets[sids[0]]) == {"written": "now"}
            await sockets[sids[1]].close()
            await asyncio.sleep(0.1)
            assert not hub.write_now(sids[1], b"{}")  # a closed socket: left to the awaited path
