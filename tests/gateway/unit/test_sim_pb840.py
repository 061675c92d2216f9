"""PB840 simulator: frames follow the wire layout and answer polls over TCP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from gateway.simulators import Pb840Simulator, Physiology, VentSettings, Vitals
from gateway.simulators.pb840 import encode_misca, encode_miscf
from mappers.pb840 import decode_response
from mappers.profiles import load_profile

AT = datetime(2026, 11, 28, 9, 5, 0, tzinfo=UTC)
VITALS = Vitals(hr=80, rr=12, spo2=97, sbp=120, dbp=75, temp=37.2, fio2=35, etco2=38)
SETTINGS = VentSettings(serial="3510012345", set_rr=14.0, set_vt_l=0.45, peep=5.0)


def counts(frame: bytes) -> tuple[int, int, int, int]:
    head, rest = frame.split(b"\x02", 1)
    body = rest[: rest.index(b"\x03")]
    _, nbytes, nfields, _ = head.split(b",")
    return int(nbytes), len(body), int(nfields), body.count(b",")


def test_miscf_layout():
    frame = encode_miscf(VITALS, SETTINGS, AT)
    assert frame.startswith(b"MISCF,") and frame.endswith(b"\x03\r")
    nbytes, actual, nfields, commas = counts(frame)
    assert nbytes == actual and nfields == commas == 169
    fields = frame.split(b"\x02")[1].split(b",")
    assert fields[0] == b"09:05 "  # field 5
    assert fields[1].rstrip() == b"840 3510012345" and len(fields[1]) == 18
    assert fields[2] == b"NOV 28 2026 "
    assert fields[14 - 5] == b"0.450 "  # set VT in litres
    assert fields[70 - 5] == b"14.0  "  # fTOT: the set rate exceeds the patient's 12
    assert fields[106 - 5] == b"NORMAL"


def test_misca_layout():
    frame = encode_misca(VITALS, SETTINGS, AT)
    nbytes, actual, nfields, commas = counts(frame)
    assert nbytes == actual and nfields == commas == 97
    fields = frame.split(b"\x02")[1].split(b",")
    assert fields[9 - 5].strip() == b"CMV"
    assert fields[11 - 5].strip() == b"0.45"


def test_decoder_reads_simulated_frames():
    profile = load_profile("medtronic-pb840")
    rec = decode_response(encode_miscf(VITALS, SETTINGS, AT), profile, received_at=AT)
    assert rec.serial == "3510012345"
    assert str(rec.value("set_vt").value) == "450"
    assert str(rec.value("ftot").value) == "14"  # the set rate exceeds the patient's 12
    assert str(rec.value("set_o2").value) == "35"
    assert rec.active_alarms == ()


async def poll(port: int, command: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(command)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readuntil(b"\x03\r"), 5)
    finally:
        writer.close()


async def test_server_answers_polls_and_goes_silent():
    sim = Pb840Simulator(Physiology("stable", 1), SETTINGS)
    await sim.start()
    try:
        assert (await poll(sim.port, b"SNDF\r")).startswith(b"MISCF,")
        assert (await poll(sim.port, b"SNDA\r")).startswith(b"MISCA,")
        sim.silent = True
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        writer.write(b"SNDF\r")
        await writer.drain()
        done, _ = await asyncio.wait({asyncio.create_task(reader.read(1))}, timeout=0.3)
        assert not done  # nothing came back
        writer.close()
        assert sim.polls_answered == 2
    finally:
        await sim.close()
