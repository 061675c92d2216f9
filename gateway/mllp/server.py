"""The MLLP TCP listener: connections, allowlist, optional TLS, ACKs in order per connection.

Each connection runs one loop: read a frame, run it through the :class:`Ingestor`, write
the ACK, read the next. So ACKs leave in the order the frames arrived, and a slow commit
holds back only its own connection; throughput across connections comes from the store's
group commit (many connections' jobs share one transaction). A bad message costs a NAK,
never the connection; the connection closes only on end of stream, the idle timeout (which
also ends half-open peers, helped by TCP keepalive) or an oversized frame (after its AR).
Connection tasks are kept in a set and cancelled and awaited by :meth:`MllpServer.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from .framing import DEFAULT_MAX_FRAME, FrameReader, Oversized, frame
from .ingest import Ingestor

log = logging.getLogger(__name__)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_STREAM_LIMIT = 1 << 16  # bytes buffered per read step; frames may be longer (see framing)


@dataclass(frozen=True)
class ListenerConfig:
    """Where and how to listen. ``allow`` empty means every peer is accepted."""

    host: str = "127.0.0.1"
    port: int = 2575
    max_frame: int = DEFAULT_MAX_FRAME
    idle_timeout: float = 300.0
    ssl: ssl.SSLContext | None = None
    allow: tuple[Network, ...] = ()


def parse_allowlist(spec: str | Iterable[str]) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.168.1.7"`` -> networks (a bare address is a /32 or /128)."""
    items = spec.split(",") if isinstance(spec, str) else spec
    return tuple(ipaddress.ip_network(i.strip(), strict=False) for i in items if i.strip())


def server_ssl_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """TLS for MLLP; with ``client_ca`` senders must present a certificate signed by it."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def peer_allowed(host: str, allow: tuple[Network, ...]) -> bool:
    if not allow:
        return True
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in allow)


class MllpServer:
    """``await start()``, then ``port`` is known; ``await stop()`` closes everything."""

    def __init__(self, ingestor: Ingestor, config: ListenerConfig) -> None:
        self.ingestor = ingestor
        self.config = config
        self._server: asyncio.Server | None = None
        self._tasks: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.connections = 0

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        c = self.config
        self._server = await asyncio.start_server(
            self._connected, c.host, c.port, ssl=c.ssl, limit=_STREAM_LIMIT, reuse_address=True
        )
        log.info("mllp listening on %s:%d%s", c.host, self.port, " (TLS)" if c.ssl else "")

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # end each connection from below (its reads fail), so an ingest in progress still
        # finishes its commit; only what is still running after a grace period is cancelled
        for writer in self._tasks.values():
            writer.transport.abort()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks[task] = writer
        task.add_done_callback(lambda t: self._tasks.pop(t, None))
        peername = writer.get_extra_info("peername") or ("?", 0)
        peer = f"{peername[0]}:{peername[1]}"
        try:
            if not peer_allowed(str(peername[0]), self.config.allow):
                log.warning("mllp %s: peer not in the allowlist, closed", peer)
                return
            _keepalive(writer)
            self.connections += 1
            await self._serve(FrameReader(reader, max_frame=self.config.max_frame, peer=peer),
                              writer, peer)
        except (ConnectionError, ssl.SSLError) as exc:
            log.info("mllp %s: connection lost: %s", peer, type(exc).__name__)
        except asyncio.CancelledError:
            # only stop() cancels these tasks; ending normally keeps asyncio's stream
            # callback (which reads task.exception()) quiet
            log.info("mllp %s: connection cancelled by shutdown", peer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, OSError,
                                     asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, frames: FrameReader, writer: asyncio.StreamWriter, peer: str) -> None:
        while True:
            try:
                async with asyncio.timeout(self.config.idle_timeout):
                    item = await frames.next()
            except TimeoutError:
                log.info("mllp %s: idle for %.0f s, closed", peer, self.config.idle_timeout)
                return
            if item is None:
                return
            if isinstance(item, Oversized):
                result = await self.ingestor.oversized(item.head, item.size_seen, peer)
                if result.ack is not None:
                    writer.write(frame(result.ack))
                    await writer.drain()
                log.warning("mllp %s: frame over %d bytes, closed", peer, self.config.max_frame)
                return
            result = await self.ingestor.ingest(item.payload, peer)
            if result.ack is not None:
                writer.write(frame(result.ack))
                await writer.drain()


def _keepalive(writer: asyncio.StreamWriter) -> None:
    """TCP keepalive, so a peer that vanished without a FIN is noticed even between frames."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
