"""A minimal rest-hook receiver on a real socket, for tests, benchmarks and local trials.

HTTP/1.1 with keep-alive, ``Content-Length`` bodies only (what ``httpx`` sends). Each POST
is recorded with the monotonic time its body was fully read; ``status`` sets the answer
(e.g. 503 to play a failing endpoint). Not a production server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Received:
    at: float  # time.perf_counter() when the body was complete
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, keep: bool = True) -> None:
        self.host, self.port = host, port
        self.status = 200
        self.keep = keep  # False: only count and call on_receive (benchmarks)
        self.received: list[Received] = []
        self.count = 0
        self.on_receive: Callable[[float, bytes], None] | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close the listener and every open connection (the endpoint is down)."""
        if self._server is not None:
            self._server.close()
            for w in list(self._conns):
                w.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1] if " " in lines[0] else "/"
                headers = {}
                for line in lines[1:]:
                    k, sep, v = line.partition(":")
                    if sep:
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                at = time.perf_counter()
                self.count += 1
                if self.keep:
                    self.received.append(Received(at, path, headers, body))
                if self.on_receive is not None:
                    self.on_receive(at, body)
                self._arrived.set()
                status = self.status
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # the loop is closing under an open connection: on 3.11 a cancelled handler task makes
            # asyncio's start_server callback log a traceback per connection (fixed in 3.12)
            return
        finally:
            self._conns.discard(writer)
            writer.close()

    async def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(received)`` holds; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while not predicate(self.received):
                self._arrived.clear()
                await self._arrived.wait()

    def notifications(self, kind: str = "event-notification") -> list[dict[str, Any]]:
        """Received Bundles of one SubscriptionStatus type, oldest first."""
        out = []
        for r in self.received:
            b = r.json()
            if b["entry"][0]["resource"]["type"] == kind:
                out.append(b)
        return out


def event_numbers(bundles: list[dict[str, Any]]) -> list[int]:
    return [int(e["eventNumber"]) for b in bundles for e in b["entry"][0]["resource"].get("notificationEvent", [])]
