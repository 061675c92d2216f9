"""Kill the listener process with SIGKILL during a stream: every ACKed message survives.

The server runs as a separate process (``python -m gateway.mllp``) on a SQLite file. Eight
senders stream messages; after enough ACKs the process is killed mid-stream, restarted on
the same file, and every message that got an AA must be in the inbox as accepted, with its
Observation stored, and a resend of it must get the very same ACK back (a duplicate).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from fhir_server.storage import Store, make_engine
from gateway.inbox import list_entries
from gateway.mllp.client import MllpClient

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[3]


def oru(sender: int, n: int) -> bytes:
    return (
        f"MSH|^~\\&|DEV{sender}|ICU|VG|HOSP|20240301101500+0000||ORU^R01|k{sender}-{n}|P|2.6\r"
        f"PID|||MRN{sender}^^^HOSP^MR\r"
        "OBR|1|||182777000^monitoring of patient^SCT|||20240301101500+0000\r"
        f"OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|{60 + n % 50}|/min^/min^UCUM|||||R|||"
        f"2024030110{n // 60 % 60:02d}{n % 60:02d}+0000\r"
    ).encode()


async def start_server(db: Path, writer_process: bool = False) -> tuple[asyncio.subprocess.Process, int]:
    env = {**os.environ, "VITALGATE_DATABASE_URL": f"sqlite:///{db}", "VITALGATE_LOG_LEVEL": "WARNING",
           "VITALGATE_WRITER_PROCESS": "1" if writer_process else "0"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.mllp", "--port", "0", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        line = (await proc.stdout.readline()).decode()
    assert line.startswith("mllp listening on "), line
    return proc, int(line.rsplit(":", 1)[1])


async def stream(port: int, sender: int, acked: dict[bytes, bytes], stop: asyncio.Event) -> None:
    try:
        async with MllpClient("127.0.0.1", port, timeout=10) as c:
            n = 0
            while not stop.is_set():
                payload = oru(sender, n)
                ack = await c.call(payload)
                if ack is None:
                    return
                if b"MSA|AA|" in ack:
                    acked[payload] = ack
                n += 1
    except (ConnectionError, TimeoutError, OSError):
        return


# writer_process: the writer's child outlives the killed listener for as long as it takes to
# read end-of-file (a commit in progress finishes); the restarted listener's child waits for
# SQLite's lock and must find every ACKed message
@pytest.mark.parametrize("writer_process", [False, True], ids=["writer-thread", "writer-process"])
async def test_sigkill_mid_stream_loses_no_acked_message(tmp_path: Path, writer_process: bool) -> None:
    db = tmp_path / "crash.db"
    proc, port = await start_server(db, writer_process)
    acked: dict[bytes, bytes] = {}
    stop = asyncio.Event()
    senders = [asyncio.create_task(stream(port, i, acked, stop)) for i in range(8)]
    try:
        async with asyncio.timeout(30):
            while len(acked) < 200:
                await asyncio.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-stream: senders are waiting for ACKs
        await proc.wait()
        stop.set()
        await asyncio.gather(*senders)

    proc, port = await start_server(db, writer_process)
    try:
        resend = list(acked.items())[::25]
        async with MllpClient("127.0.0.1", port) as c:
            for payload, ack in resend:
                assert await c.call(payload) == ack  # a duplicate: the stored ACK again
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    store = Store(make_engine(f"sqlite+aiosqlite:///{db}"))
    try:
        entries = await list_entries(store, status="accepted", limit=100_000)
        stored = {e.payload: e.ack for e in entries}
        missing = [p for p in acked if stored.get(p) != acked[p]]
        assert missing == []
        _, observations = await store.history("Observation", count=1)
        assert observations >= len({p.split(b"OBX", 1)[1] for p in acked})
    finally:
        await store.engine.dispose()
