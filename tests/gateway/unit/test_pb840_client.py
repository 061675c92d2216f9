"""PB840 client against the simulator on loopback: records, silence, recovery, reconnect."""

from __future__ import annotations

import asyncio
import socket

from gateway.devices import DeviceStatusEvent, Pb840Client
from gateway.simulators import Pb840Simulator, Physiology, VentSettings
from mappers.profiles import load_profile


class Recorder:
    def __init__(self) -> None:
        self.records = []
        self.events: list[DeviceStatusEvent] = []
        self.errors = []
        self.changed = asyncio.Event()

    async def on_record(self, record) -> None:
        self.records.append(record)
        self.changed.set()

    async def on_status(self, event: DeviceStatusEvent) -> None:
        self.events.append(event)
        self.changed.set()

    async def on_error(self, frame: bytes, reason: str) -> None:
        self.errors.append(reason)
        self.changed.set()

    def statuses(self) -> list[str]:
        return [e.status for e in self.events]

    async def until(self, predicate, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)


def client_for(port: int, rec: Recorder, **kw) -> Pb840Client:
    return Pb840Client("127.0.0.1", port, load_profile("medtronic-pb840"),
                       on_record=rec.on_record, on_status=rec.on_status,
                       on_error=rec.on_error, poll_interval_s=0.05,
                       stale_timeout_s=0.3, backoff_s=(0.05, 0.2), **kw)


async def test_polls_and_decodes_records():
    sim = Pb840Simulator(Physiology("stable", 2), VentSettings(serial="3510000042"))
    await sim.start()
    rec = Recorder()
    client = client_for(sim.port, rec)
    task = asyncio.create_task(client.run())
    try:
        await rec.until(lambda: len(rec.records) >= 3)
        assert rec.statuses()[0] == "connected"
        r = rec.records[0]
        assert (r.record_type, r.model, r.serial) == ("MISCF", "840", "3510000042")
        assert r.device_id == "medtronic-840-3510000042"
        assert r.received_at.tzinfo is not None
        assert rec.errors == []
    finally:
        client.stop()
        await task
        await sim.close()


async def test_silent_ventilator_detected_and_recovers():
    sim = Pb840Simulator(Physiology("stable", 3))
    await sim.start()
    rec = Recorder()
    client = client_for(sim.port, rec)
    task = asyncio.create_task(client.run())
    try:
        await rec.until(lambda: len(rec.records) >= 1)
        sim.silent = True
        await rec.until(lambda: "silent" in rec.statuses())
        silent = next(e for e in rec.events if e.status == "silent")
        assert silent.device_id == "medtronic-840-3510099999"
        assert "no valid response" in silent.reason
        before = len(rec.records)
        sim.silent = False
        await rec.until(lambda: "responding" in rec.statuses())
        await rec.until(lambda: len(rec.records) > before)
        assert rec.statuses().count("silent") == 1  # reported once, not per poll
        assert "disconnected" not in rec.statuses()  # the TCP link stayed up
    finally:
        client.stop()
        await task
        await sim.close()


async def test_reconnects_after_the_server_goes_away():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = Recorder()
    client = client_for(port, rec)
    task = asyncio.create_task(client.run())
    sim = None
    try:
        await rec.until(lambda: "disconnected" in rec.statuses())
        sim = Pb840Simulator(Physiology("stable", 4), port=port)
        await sim.start()
        await rec.until(lambda: len(rec.records) >= 1)
        assert rec.statuses()[:2] == ["disconnected", "connected"]
        assert rec.statuses().count("disconnected") == 1  # not one per retry
    finally:
        client.stop()
        await task
        if sim is not None:
            await sim.close()


async def test_undecodable_response_goes_to_on_error():
    async def garbage(reader, writer):
        while True:
            try:
                await reader.readuntil(b"\r")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(b"MISCF,5,1 ,\x02abc,\x03\r")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rec = Recorder()
    client = client_for(port, rec)
    task = asyncio.create_task(client.run())
    try:
        await rec.until(lambda: len(rec.errors) >= 2 and "silent" in rec.statuses())
        assert "byte count mismatch" in rec.errors[0]
        assert rec.records == []
    finally:
        client.stop()
        await task
        server.close()
        await server.wait_closed()


def test_refuses_non_pb840_profile():
    import pytest

    with pytest.raises(ValueError, match="not a pb840"):
        Pb840Client("127.0.0.1", 1, load_profile("baxter-spectrum-iq"),
                    on_record=None, on_status=None)
