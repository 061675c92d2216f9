"""Channels: how a notification Bundle reaches a subscriber.

- ``RestHookSender``: POST to the endpoint with the subscription's headers, through
  ``http1.Http1Client``: one bounded keep-alive pool per endpoint origin, so a slow or dead
  endpoint only ever holds its own connections.
- ``WebSocketHub``: binding tokens (``$get-ws-binding-token``) and the sockets bound to each
  subscription; a send writes the Bundle as one text frame to every bound socket, straight to
  the transport when the connection allows it (``write_now``, see ``ws_protocol``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from .http1 import Http1Client, HttpError
from .model import SubscriptionSpec
from .ws_protocol import text_frame


class RestHookSender:
    def __init__(self, connections_per_endpoint: int = 32) -> None:
        self.http = Http1Client(connections_per_endpoint)
        self._by_headers: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}  # built once per header set

    async def post(self, spec: SubscriptionSpec, body: bytes) -> str | None:
        """Send; None on a 2xx, else why it failed (never raises for network trouble)."""
        assert spec.endpoint is not None
        headers = self._headers(spec)
        try:
            status = await self.http.post(spec.endpoint, body, headers, spec.timeout)
        except HttpError as exc:
            return f"posting to the endpoint failed: {exc}"
        except TimeoutError:
            return f"the endpoint did not answer within {spec.timeout} s"
        if 200 <= status < 300:
            return None
        return f"endpoint answered HTTP {status}"

    def submit(self, spec: SubscriptionSpec, body: bytes) -> asyncio.Future[int]:
        """Send without a task of its own (fan-out); the future holds the status. Raises HttpError
        for an endpoint it cannot send to at all."""
        assert spec.endpoint is not None
        return self.http.submit(spec.endpoint, body, self._headers(spec), spec.timeout)

    def _headers(self, spec: SubscriptionSpec) -> dict[str, str]:
        found = self._by_headers.get(spec.headers)
        if found is None:
            if len(self._by_headers) > 10_000:
                self._by_headers.clear()
            found = self._by_headers[spec.headers] = {"Content-Type": "application/fhir+json", **dict(spec.headers)}
        return found

    async def close(self) -> None:
        await self.http.close()


SendText = Callable[[str], Awaitable[None]]


class FrameWriter(Protocol):  # ws_protocol.SubscriptionWebSocketProtocol
    def can_write(self) -> bool: ...
    def write_text(self, payload: bytes, frame: bytes) -> None: ...


@dataclass
class Binding:
    send: SendText
    frames: FrameWriter | None = None  # writes a frame synchronously, when the server offers it
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class WebSocketHub:
    def __init__(self, token_ttl: float = 600.0) -> None:
        self.token_ttl = token_ttl
        self._tokens: dict[str, tuple[frozenset[str], float]] = {}
        self._bound: dict[str, list[Binding]] = {}
        self.on_bind: Callable[[str], None] = lambda _sub_id: None

    def issue(self, sub_ids: list[str]) -> tuple[str, float]:
        """A new single-purpose token for ``sub_ids``; returns it and its expiry (epoch seconds)."""
        now = time.time()
        self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
        token = secrets.token_urlsafe(24)
        expires = now + self.token_ttl
        self._tokens[token] = (frozenset(sub_ids), expires)
        return token, expires

    def redeem(self, token: str) -> frozenset[str] | None:
        found = self._tokens.get(token)
        if found is None or found[1] < time.time():
            return None
        return found[0]

    def bind(self, sub_id: str, binding: Binding) -> None:
        self._bound.setdefault(sub_id, []).append(binding)
        self.on_bind(sub_id)

    def unbind(self, sub_id: str, binding: Binding) -> None:
        lst = self._bound.get(sub_id, [])
        if binding in lst:
            lst.remove(binding)
        if not lst:
            self._bound.pop(sub_id, None)

    def is_bound(self, sub_id: str) -> bool:
        return bool(self._bound.get(sub_id))

    def write_now(self, sub_id: str, body: bytes) -> bool:
        """Write to every socket bound to ``sub_id`` without awaiting, if each of them can take a
        frame at once (none paused, closing or in the middle of an awaited send); the frame is
        built once for all of them. False when nothing was written: use ``send``."""
        bindings = self._bound.get(sub_id)
        if not bindings:
            return False
        for b in bindings:
            if b.frames is None or b.lock.locked() or not b.frames.can_write():
                return False
        frame = text_frame(body)
        for b in bindings:
            b.frames.write_text(body, frame)  # type: ignore[union-attr]  # checked above
        return True

    async def send(self, sub_id: str, body: bytes) -> str | None:
        """Write to every socket bound to ``sub_id``; None if at least one write completed."""
        bindings = list(self._bound.get(sub_id, ()))
        if not bindings:
            return "no websocket bound"
        if self.write_now(sub_id, body):
            return None
        text = body.decode()
        ok = False
        for b in bindings:
            try:
                async with b.lock:
                    await b.send(text)
                ok = True
            except Exception:  # noqa: BLE001 - a closed socket: drop it, try the others
                self.unbind(sub_id, b)
        return None if ok else "websocket closed"
