"""Property: random and mutated messages over a real connection never break the listener.

For every frame: exactly one ACK or NAK comes back (none only when the frame's own MSH-15
asks for none), no internal error (ERR 207) is reported, the same connection answers the
next message, and a fresh connection is served too. The listener runs on its own event
loop in a thread; the test talks to it through blocking sockets, as a sender would.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.storage import Store, make_engine, upgrade
from gateway.mllp import Ingestor, ListenerConfig, MllpServer
from mappers.hl7v2 import MappingContext, accept_ack_code, read_header_lenient

SAMPLES = sorted(Path("/work/shared/samples/hl7v2").glob("*.hl7"))
_markers = itertools.count()


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    db = tmp_path_factory.mktemp("prop") / "p.db"
    holder: dict[str, object] = {}

    async def setup() -> int:
        engine = make_engine(f"sqlite+aiosqlite:///{db}")
        await upgrade(engine)
        store = Store(engine)
        await store.start()
        server = MllpServer(Ingestor(store, MappingContext()),
                            ListenerConfig(port=0, max_frame=65_536, idle_timeout=30))
        await server.start()
        holder.update(store=store, server=server)
        return server.port

    async def teardown() -> None:
        await holder["server"].stop()  # type: ignore[attr-defined]
        await holder["store"].close()  # type: ignore[attr-defined]

    yield asyncio.run_coroutine_threadsafe(setup(), loop).result(30)
    asyncio.run_coroutine_threadsafe(teardown(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


class Sender:
    """Blocking MLLP client."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, payload: bytes) -> None:
        self.sock.sendall(b"\x0b" + payload + b"\x1c\x0d")

    def receive(self) -> bytes:
        while b"\x1c\x0d" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "server closed a healthy connection"
            self.buf += chunk
        frame, self.buf = self.buf.split(b"\x1c\x0d", 1)
        assert frame.startswith(b"\x0b")
        return frame[1:]

    def close(self) -> None:
        self.sock.close()


def marker() -> tuple[bytes, bytes]:
    cid = f"marker-{next(_markers)}".encode()
    msg = (b"MSH|^~\\&|MARKER|T|||20240101000000||ORU^R01|" + cid + b"|P|2.5\r"
           b"PID|||1^^^H^MR\rOBX|1|NM|147842^HR^MDC|1|60|/min|||||F\r")
    return msg, cid


def msa(ack: bytes) -> list[bytes]:
    sep = ack[3:4]
    line = next(seg for seg in ack.split(b"\r") if seg.startswith(b"MSA"))
    return line.split(sep)


def mutate(data: bytes, ops: list[tuple[int, int, int, bytes]]) -> bytes:
    for kind, at, length, blob in ops:
        at = at % (len(data) + 1)
        if kind == 0:  # delete a range
            data = data[:at] + data[at + length :]
        elif kind == 1:  # insert bytes
            data = data[:at] + blob + data[at:]
        elif kind == 2:  # overwrite
            data = data[:at] + blob + data[at + len(blob) :]
        else:  # duplicate a range (repeated segments, fields)
            data = data[:at] + data[at : at + length] + data[at:]
    # bytes MLLP cannot carry inside a frame
    return data.replace(b"\x0b", b"?").replace(b"\x1c", b"?")


hl7ish = st.sampled_from([b"|", b"^", b"~", b"\\", b"&", b"\r", b"\n", b"MSH|", b"OBX|", b'""',
                          b"\\X41\\", b"\\.br\\", b"\xff", b"\x00", b"PID|||", b"NM", b"-1e9"])
blob = st.one_of(st.binary(max_size=12), st.lists(hl7ish, max_size=4).map(b"".join))
op = st.tuples(st.integers(0, 3), st.integers(0, 5000), st.integers(0, 40), blob)
mutated = st.tuples(st.sampled_from(SAMPLES), st.lists(op, max_size=5)).map(
    lambda t: mutate(t[0].read_bytes(), t[1]))
frames = st.lists(st.one_of(mutated, st.binary(max_size=300).map(lambda b: mutate(b, []))),
                  min_size=1, max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=frames)
def test_every_frame_is_answered_and_the_listener_keeps_serving(port: int, payloads: list[bytes]):
    s = Sender(port)
    try:
        for payload in payloads:
            s.send(payload)
            mark, cid = marker()
            s.send(mark)
            answers = []
            while True:
                ack = s.receive()
                fields = msa(ack)
                if fields[2] == cid:
                    assert fields[1] == b"AA"
                    break
                answers.append(ack)
            assert len(answers) <= 1
            if answers:
                assert b"Application internal error" not in answers[0], answers[0]  # ERR 207
            else:  # silence is allowed only when the frame's own MSH-15 asked for it
                header = read_header_lenient(payload)
                assert header is not None
                assert None in (accept_ack_code(header, o) for o in ("accept", "error", "reject"))
    finally:
        s.close()
    other = Sender(port)
    try:
        mark, cid = marker()
        other.send(mark)
        assert msa(other.receive())[1:3] == [b"AA", cid]
    finally:
        other.close()
