"""An alert delivered to a subscriber, end to end: a real node (MLLP listener, alerting consumer,
subscription delivery, uvicorn), a real subscriber on the shipped ``detected-issue`` topic (a
rest-hook HTTP receiver, or a websocket client as the dashboard binds), an ORU^R01 with a
deteriorating value in over MLLP, and the notification Bundle carrying the DetectedIssue out.

The subscription filters on the patient and on ``severity=high``: another patient's alert,
raised just before, must not reach this subscriber."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
import websockets

from fhir_server.subscriptions.model import CONTENT_EXT, FILTER_EXT
from fhir_server.subscriptions.receiver import Receiver
from fhir_server.subscriptions.topics import TOPIC_BASE
from fhir_server.subscriptions.ws_protocol import NODE_WS_CONFIG
from gateway.app import Node, build_app, running_node
from gateway.mllp.client import MllpClient
from gateway.settings import Settings
from gateway.simulators.hl7_monitor import BedFeed, monitor_oru
from gateway.simulators.physiology import Vitals

pytestmark = pytest.mark.e2e
NORMAL = Vitals(hr=78, rr=14, spo2=97, sbp=122, dbp=74, temp=36.9, fio2=30, etco2=38)
DESATURATED = Vitals(hr=78, rr=14, spo2=83, sbp=122, dbp=74, temp=36.9, fio2=30, etco2=38)  # ICU: high at once


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def served_node(tmp_path: Path) -> AsyncIterator[tuple[Settings, Node, httpx.AsyncClient]]:
    """The node's default parts behind a real uvicorn (the websocket endpoint needs one)."""
    settings = Settings(database_url=f"sqlite:///{tmp_path}/edge.db", http_port=free_port(), mllp_port=free_port(),
                        alert_ruleset="icu-limits", model_dir=tmp_path / "models", log_level="WARNING")
    async with running_node(settings) as node:
        server = uvicorn.Server(uvicorn.Config(build_app(node), host="127.0.0.1", port=settings.http_port,
                                               lifespan="off", log_level="warning", **NODE_WS_CONFIG))
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.01)
                if task.done():
                    task.result()
            async with httpx.AsyncClient(base_url=settings.fhir_base + "/", timeout=30,
                                         headers={"content-type": "application/fhir+json"}) as client:
                yield settings, node, client
        finally:
            server.should_exit = True
            await task


async def send(settings: Settings, *messages: bytes) -> None:
    async with MllpClient(settings.mllp_host, settings.mllp_port) as mllp:
        for message in messages:
            ack = await mllp.call(message)
            assert ack is not None and b"MSA|CA|" in ack, ack


async def patient_id(client: httpx.AsyncClient, bed: BedFeed) -> str:
    [patient] = (await client.get("Patient", params={"identifier": bed.mrn})).json()["entry"]
    return str(patient["resource"]["id"])


def alert_subscription(pid: str, channel: str, endpoint: str | None = None) -> dict[str, Any]:
    ch: dict[str, Any] = {"type": channel, "payload": "application/fhir+json",
                          "_payload": {"extension": [{"url": CONTENT_EXT, "valueCode": "full-resource"}]}}
    if endpoint is not None:
        ch["endpoint"] = endpoint
    return {"resourceType": "Subscription", "status": "requested", "reason": "bedside alerts",
            "criteria": TOPIC_BASE + "detected-issue", "channel": ch,
            "_criteria": {"extension": [{"url": FILTER_EXT,
                                         "valueString": f"DetectedIssue?patient=Patient/{pid}&severity=high"}]}}


async def alert_reaches_subscriber(tmp_path: Path,
                                   subscribe: Callable[[httpx.AsyncClient, str], Awaitable[str]],
                                   next_bundle: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    """Admit two patients, subscribe to one's high alerts, desaturate both over MLLP (the other
    first), and check the one event-notification that arrives."""
    watched, other = BedFeed(7), BedFeed(8)
    now = datetime.now(UTC).replace(microsecond=0)
    async with served_node(tmp_path) as (settings, node, client):
        await send(settings, monitor_oru(watched, NORMAL, now, "S-1"), monitor_oru(other, NORMAL, now, "S-2"))
        pid, other_pid = await patient_id(client, watched), await patient_id(client, other)
        sid = await subscribe(client, pid)

        await send(settings, monitor_oru(other, DESATURATED, now + timedelta(seconds=1), "S-3"),
                   monitor_oru(watched, DESATURATED, now + timedelta(seconds=1), "S-4"))
        bundle = await asyncio.wait_for(next_bundle(), 10)

        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
        status = bundle["entry"][0]["resource"]
        assert status["resourceType"] == "SubscriptionStatus" and status["type"] == "event-notification"
        assert status["status"] == "active" and status["topic"] == TOPIC_BASE + "detected-issue"
        assert status["subscription"]["reference"].endswith(f"Subscription/{sid}")
        assert status["eventsSinceSubscriptionStart"] == "1"  # the other patient's alert was filtered out
        [event] = status["notificationEvent"]
        assert event["eventNumber"] == "1"
        [entry] = bundle["entry"][1:]
        issue = entry["resource"]
        assert event["focus"]["reference"] == entry["fullUrl"] == f"{settings.fhir_base}/DetectedIssue/{issue['id']}"
        assert entry["request"]["method"] == "POST" and entry["response"]["etag"] == 'W/"1"'
        assert issue["resourceType"] == "DetectedIssue" and issue["status"] == "preliminary"
        assert issue["severity"] == "high" and issue["code"]["coding"][0]["code"] == "limit-spo2-low"
        assert issue["patient"] == {"reference": f"Patient/{pid}"}
        [evidence] = issue["evidence"][0]["detail"]
        spo2 = (await client.get(evidence["reference"])).json()
        assert spo2["valueQuantity"]["value"] == 83 and spo2["subject"] == {"reference": f"Patient/{pid}"}

        # what was delivered is what is stored and found by search; the other alert exists too
        found = (await client.get("DetectedIssue", params={"patient": f"Patient/{pid}"})).json()["entry"]
        assert [e["resource"] for e in found] == [issue]
        others = (await client.get("DetectedIssue", params={"patient": f"Patient/{other_pid}"})).json()["entry"]
        assert [e["resource"]["code"]["coding"][0]["code"] for e in others] == ["limit-spo2-low"]
        stored = (await client.get(f"Subscription/{sid}/$status")).json()["entry"][0]["resource"]
        assert stored["eventsSinceSubscriptionStart"] == "1" and stored["status"] == "active"


async def test_alert_over_mllp_reaches_a_rest_hook_subscriber(tmp_path: Path):
    receiver = await Receiver().start()
    try:
        async def subscribe(client: httpx.AsyncClient, pid: str) -> str:
            r = await client.post("Subscription", json=alert_subscription(pid, "rest-hook", receiver.url))
            assert r.status_code == 201, r.text
            await receiver.wait_for(lambda got: any(g.json()["entry"][0]["resource"]["type"] == "handshake"
                                                    for g in got))
            return str(r.json()["id"])

        async def next_bundle() -> dict[str, Any]:
            await receiver.wait_for(lambda _: bool(receiver.notifications()))
            [bundle] = receiver.notifications()
            return bundle

        await alert_reaches_subscriber(tmp_path, subscribe, next_bundle)
        assert receiver.received[-1].headers["content-type"].startswith("application/fhir+json")
    finally:
        await receiver.stop()


async def test_alert_over_mllp_reaches_a_websocket_subscriber(tmp_path: Path):
    async with contextlib.AsyncExitStack() as stack:
        sockets: list[Any] = []

        async def subscribe(client: httpx.AsyncClient, pid: str) -> str:
            r = await client.post("Subscription", json=alert_subscription(pid, "websocket"))
            assert r.status_code == 201, r.text
            sid = str(r.json()["id"])
            params = {p["name"]: p for p in (await client.post(f"Subscription/{sid}/$get-ws-binding-token")).json()[
                "parameter"]}
            ws = await stack.enter_async_context(websockets.connect(params["websocket-url"]["valueUrl"]))
            await ws.send(f"bind-with-token: {params['token']['valueString']}")
            hello = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            assert hello["entry"][0]["resource"]["type"] == "handshake"
            sockets.append(ws)
            return sid

        async def next_bundle() -> dict[str, Any]:
            return orjson.loads(await sockets[0].recv())

        await alert_reaches_subscriber(tmp_path, subscribe, next_bundle)
