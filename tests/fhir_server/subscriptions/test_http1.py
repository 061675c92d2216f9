"""The rest-hook HTTP/1.1 client against real sockets: pipelining, closing servers, stale connections."""

from __future__ import annotations

import asyncio

import pytest

from fhir_server.subscriptions.http1 import Http1Client, HttpError
from fhir_server.subscriptions.receiver import Receiver

HEADERS = {"Content-Type": "application/fhir+json"}


async def test_many_concurrent_posts_share_few_connections_and_all_arrive_in_order():
    r = await Receiver().start()
    client = Http1Client(2)
    try:
        statuses = await asyncio.gather(*(client.post(r.url, b'{"n":%d}' % i, HEADERS, 10) for i in range(300)))
        assert statuses == [200] * 300
        assert sorted(rec.json()["n"] for rec in r.received) == list(range(300))
        assert len(r._conns) <= 2  # pipelined over at most two connections
    finally:
        await client.close()
        await r.stop()


async def _closing_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers one request per connection, then closes (``Connection: close``)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.startswith(b"content-length")))
    await reader.readexactly(length)
    writer.write(b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


async def test_requests_behind_a_closing_answer_are_sent_again_on_a_new_connection():
    server = await asyncio.start_server(_closing_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Http1Client(1)
    try:
        got = await asyncio.gather(*(client.post(f"http://127.0.0.1:{port}/", b"{}", HEADERS, 10) for _ in range(20)))
        assert got == [201] * 20
    finally:
        await client.close()
        server.close()


async def test_a_restarted_endpoint_is_reached_through_a_fresh_connection_and_a_dead_one_fails():
    r = await Receiver().start()
    port = r.port
    client = Http1Client(4)
    try:
        assert await client.post(r.url, b"{}", HEADERS, 5) == 200
        await r.stop()  # the kept-alive connection is now stale
        with pytest.raises(HttpError):
            await client.post(r.url, b"{}", HEADERS, 5)
        back = await Receiver(port=port).start()
        try:
            assert await client.post(back.url, b"{}", HEADERS, 5) == 200
        finally:
            await back.stop()
    finally:
        await client.close()
