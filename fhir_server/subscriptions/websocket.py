"""The websocket channel's endpoint (Backport IG): bind with a token, then receive Bundles.

A client gets a token from ``$get-ws-binding-token``, connects to the returned URL and sends
``bind-with-token: <token>`` as a text frame. The server answers with one ``handshake``
Bundle per subscription the token covers, then writes ``event-notification`` and
``heartbeat`` Bundles as text frames. ``unbind-with-token: <token>`` stops them. A bad
command or token is answered with an OperationOutcome frame; the socket stays open.
Under ``ws_protocol.SubscriptionWebSocketProtocol`` (the node's uvicorn) a fan-out writes
its frames straight to the transports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from fhir_server.errors import outcome

from .channels import Binding
from .notifications import notification
from .ws_protocol import FRAMES

if TYPE_CHECKING:
    from .service import SubscriptionService

WS_PATH = "/fhir/$subscription-ws"


def websocket_router(svc: SubscriptionService) -> APIRouter:
    router = APIRouter()

    @router.websocket(WS_PATH)
    async def subscription_ws(websocket: WebSocket) -> None:
        await websocket.accept()
        binding = Binding(websocket.send_text, websocket.scope.get("extensions", {}).get(FRAMES))
        bound: set[str] = set()
        try:
            while True:
                command, _, token = (await websocket.receive_text()).partition(":")
                command, token = command.strip(), token.strip()
                ids = svc.hub.redeem(token)
                if command not in ("bind-with-token", "unbind-with-token") or ids is None:
                    why = "unknown or expired token" if ids is None else f"unknown command {command!r}"
                    async with binding.lock:
                        await websocket.send_text(orjson.dumps(outcome("error", "invalid", why)).decode())
                    continue
                for sub_id in ids:
                    if command == "unbind-with-token":
                        svc.hub.unbind(sub_id, binding)
                        bound.discard(sub_id)
                        continue
                    spec = await svc.spec(sub_id)
                    if spec is None or sub_id in bound:
                        continue
                    hello = notification(spec, "handshake", await svc.events_since(sub_id), base=svc.base)
                    async with binding.lock:
                        await websocket.send_text(hello.decode())
                    bound.add(sub_id)
                    svc.hub.bind(sub_id, binding)
        except WebSocketDisconnect:
            pass
        finally:
            for sub_id in bound:
                svc.hub.unbind(sub_id, binding)

    return router
