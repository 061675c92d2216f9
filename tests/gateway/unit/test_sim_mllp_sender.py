"""MLLP sender and run_simulation against a small loopback ACK server written here."""

from __future__ import annotations

import asyncio

import hl7

from gateway.simulators import MllpSender, ack_code, assign_scenarios, run_simulation


class AckServer:
    """Accepts MLLP frames, records them, answers AA (or AE for control ids in ``reject``)."""

    def __init__(self, reject: set[str] | None = None) -> None:
        self.messages: list[str] = []
        self.reject = reject or set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader, writer) -> None:
        try:
            while True:
                frame = await reader.readuntil(b"\x1c\r")
                text = frame[frame.index(b"\x0b") + 1 : -2].decode("latin-1")
                self.messages.append(text)
                cid = str(hl7.parse(text).segment("MSH")[10])
                code = "AE" if cid in self.reject else "AA"
                ack = f"MSH|^~\\&|VG||||20260101||ACK^R01^ACK|A{cid}|P|2.6\rMSA|{code}|{cid}\r"
                writer.write(b"\x0b" + ack.encode() + b"\x1c\r")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def test_ack_code():
    assert ack_code(b"MSH|^~\\&|X\rMSA|CA|123\r") == "CA"
    assert ack_code(b"MSH|^~\\&|X\nMSA|AE|9\n") == "AE"
    assert ack_code(b"MSH|^~\\&|X\r") is None


async def test_sender_frames_and_reads_acks():
    server = AckServer(reject={"2"})
    port = await server.start()
    try:
        async with MllpSender("127.0.0.1", port) as sender:
            a1 = await sender.send(b"MSH|^~\\&|S||||20260101||ORU^R01|1|P|2.6\rPID|||1\r")
            a2 = await sender.send(b"MSH|^~\\&|S||||20260101||ORU^R01|2|P|2.6\r")
        assert ack_code(a1) == "AA" and ack_code(a2) == "AE"
        assert a1.startswith(b"MSH|") and b"\x1c" not in a1
        assert server.messages[0].split("\r")[1] == "PID|||1"
    finally:
        await server.close()


def test_assign_scenarios_is_seeded():
    a = assign_scenarios(20, {"stable": 1, "sepsis": 1}, seed=5)
    assert a == assign_scenarios(20, {"stable": 1, "sepsis": 1}, seed=5)
    assert set(a.values()) == {"stable", "sepsis"}
    assert set(assign_scenarios(3, None, 0).values()) == {"stable"}


async def test_run_simulation_sends_over_mllp_and_serves_pb840():
    server = AckServer()
    port = await server.start()
    try:
        stats = await run_simulation(beds=2, duration=1.5, mllp=("127.0.0.1", port),
                                     pb840_listen=("127.0.0.1", 0),
                                     scenario_mix={"stable": 1.0}, seed=1)
    finally:
        await server.close()
    # per bed: the ADT admit, monitor at 0, 1 s and the pump at 0 s
    assert stats.messages_sent == 8
    assert stats.acks == {"AA": 8}
    assert len(stats.ack_ms) == 8 and stats.as_dict()["ack_ms_p99"] is not None
    assert stats.send_errors == 0
    assert len(stats.pb840_ports) == 2
    kinds = sorted(str(hl7.parse(m).segment("MSH")[3]).split("^")[0] or "PIIC"
                   for m in server.messages)
    assert kinds.count("PAT_DEVICE_BAXTER") == 2
    assert kinds.count("PIIC") == 2  # bed 2 uses the MDIL variant
    assert kinds.count("PAT_DEVICE_SIM") == 2
    assert kinds.count("SIM_ADT") == 2
    assert stats.devices_setting.count("#ICU^") == 4  # poll and waveform port per bed
