"""The real MLLP listener over TCP on 127.0.0.1, on SQLite and PostgreSQL.

Expected ACK codes come from ARCHITECTURE.md ("Acknowledgements (MLLP)") and each sample's
MSH: processing ID (MSH-11), type (MSH-9) and acknowledgement mode (MSH-15/16).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from gateway.inbox import get_entry, list_entries, replay
from gateway.mllp import Ingestor, ListenerConfig, MllpServer
from gateway.mllp.client import MllpClient
from mappers.hl7v2 import MappingContext

SAMPLES = Path("/work/shared/samples/hl7v2")


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def seg(ack: bytes, name: bytes) -> list[bytes] | None:
    """Fields of the first ``name`` segment (field separator read from MSH-1)."""
    sep = ack[3:4]
    for line in ack.split(b"\r"):
        if line.startswith(name):
            return line.split(sep)
    return None


def msa(ack: bytes) -> tuple[str, str]:
    fields = seg(ack, b"MSA")
    assert fields is not None, ack
    return fields[1].decode(), fields[2].decode()


def err_code(ack: bytes) -> int | None:
    """Table 0357 code from ERR-3 (v2.5+) or ERR-1's ELD (v2.4 and earlier)."""
    fields = seg(ack, b"ERR")
    if fields is None:
        return None
    found = re.search(rb"(\d+)[\^&%][^|$\r^&%]*[\^&%]HL70357", b"|".join(fields))
    return int(found.group(1)) if found else None


def oru(control_id: str, *, value: int = 80, app: str = "MON1", msh15: str = "",
        msh16: str = "", pid: str = "MRN1") -> bytes:
    return (
        f"MSH|^~\\&|{app}|ICU|VG|HOSP|20240301101500+0000||ORU^R01^ORU_R01|{control_id}|P|2.6"
        f"|||{msh15}|{msh16}\r"
        f"PID|||{pid}^^^HOSP^MR||DOE^JANE\r"
        "PV1||I|ICU^1^3\r"
        "OBR|1|||182777000^monitoring of patient^SCT|||20240301101500+0000\r"
        f"OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|{value}|/min^/min^UCUM|||||R|||"
        "20240301101500+0000\r"
    ).encode()


@pytest.fixture
async def listener(store):
    server = MllpServer(Ingestor(store, MappingContext()),
                        ListenerConfig(port=0, max_frame=32_768, idle_timeout=10))
    await server.start()
    yield server
    await server.stop()


async def client(server: MllpServer) -> MllpClient:
    c = MllpClient("127.0.0.1", server.port, timeout=10)
    await c.connect()
    return c


async def observations(store) -> int:
    _, total = await store.history("Observation")
    return total


# -- every sample --------------------------------------------------------------------------
ACCEPTED = {  # file -> (MSA-1, MSA-2); MSH-15 AL gives CA (enhanced mode), empty gives AA
    "ihe-pcd-tf2-rev8_pcd01-episodic-nibp_ORU_R01.hl7": ("CA", "0104ef190d604db188c3"),
    "ihe-pcd-tf2-rev8_pcd01-philips-monitor_ORU_R01.hl7": ("CA", "HP0122182658686QQ000CND119C0WS61"),
    "ihe-pcd-tf2-rev8_pcd04-pump-occlusion-alarm_ORU_R40.hl7": ("CA", "6346172845752460251"),
    "ihe-pcd-ipec-rev1.5_pcd10-delivery-start_ORU_R42.hl7": ("CA", "6358051206735492253"),
    "philips-efficia-cm_ORU_R01_MDIL.hl7": ("AA", "CN92390246"),
    "piic_center-doc-sample_ORU_R01_MDIL.hl7": ("AA", "HP104220879017992"),
    "python-hl7_rep_sample_repetition-subcomponents.hl7": ("AA", "CNTRL-3456"),
    "python-hl7_sample_msh_ADT_A01_nulls-repetitions.hl7": ("AA", "Q150084616T145947960"),
}
REFUSED = {  # file -> (MSA-1, MSA-2, ERR code); all kept as dead letters
    "hl7apy_test_parser_v27-truncation-char_RSP_K22.hl7": ("AR", "1234", 202),  # MSH-11 D
    "piic_demo-alert-setting_ORU_R01_MDIL.hl7": ("AR", "HP0802104801771B02WIN85", 202),  # T
    "ihe-pcd-tf2-rev8_pcd03-accept-ack-CA_ACK_O15.hl7": ("AR", "1", 200),
    "ihe-pcd-tf2-rev8_pcd03-app-ack-AR-with-ERR_RRG_O16.hl7": ("AR", "102", 200),
    "ihe-pcd-tf2-rev8_ws-wrapped-ACK-AA.hl7": ("AR", "AMSGID1234", 200),
    "ihe-pcd-tf2-rev8_pcd03-dopamine_RGV_O15.hl7": ("CR", "1", 200),  # MSH-15 AL: enhanced
    "ihe-pcd-tf2-rev8_pcd03-saline_RGV_O15.hl7": ("CR", "2", 200),
    "python-hl7_sample_bad_batch_missing-MSH.hl7": ("AR", "", 100),  # no MSH at all
    "python-hl7_test_parse_nonstandard-separators.hl7": ("AR", "", 202),  # MSH-11 empty
    # OBX-2 "FN" is no HL7 data type: the message cannot be mapped, AE (the sender may retry)
    "python-hl7_sample_hl7_ORU_R01.hl7": ("AE", "CNTRL-3456", 102),
}
SILENT = {  # MSH-15 NE: enhanced mode, no accept ACK is due
    "ihe-pcd-tf2-rev8_ws-wrapped-bp-cuff_ORU_R01.hl7": "accepted",
    "python-hl7_sample_file_FHS-BHS-batch_ADT_A04.hl7": "dead",  # a batch is not one message
}


def test_every_sample_is_classified() -> None:
    names = {p.name for p in SAMPLES.glob("*.hl7")}
    assert names == set(ACCEPTED) | set(REFUSED) | set(SILENT)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
async def test_good_sample_is_acked_after_its_resources_are_stored(listener, store, name) -> None:
    c = await client(listener)
    ack = await c.call(sample(name))
    await c.close()
    assert ack is not None
    assert msa(ack) == ACCEPTED[name]
    assert seg(ack, b"ERR") is None
    [row] = await list_entries(store, control_id=ACCEPTED[name][1])
    assert row.status == "accepted" and row.ack == ack and row.payload == sample(name)
    changes = await store.changes(0)
    assert changes, "the ACK went out but nothing was stored"
    if name.endswith("ORU_R01.hl7") or "ORU_R4" in name or "MDIL" in name:
        assert await observations(store) > 0
    if "ADT_A01" in name:
        assert {c.type for c in changes} >= {"Patient", "Encounter"}


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_refused_sample_gets_nak_and_dead_letter(listener, store, name) -> None:
    code, control_id, err = REFUSED[name]
    c = await client(listener)
    ack = await c.call(sample(name))
    # the connection stays usable after a refusal
    good = await c.call(oru("after-refusal"))
    await c.close()
    assert ack is not None and good is not None
    assert msa(ack) == (code, control_id)
    assert err_code(ack) == err
    assert msa(good) == ("AA", "after-refusal")
    [dead] = await list_entries(store, status="dead")
    assert dead.payload == sample(name) and dead.ack == ack
    assert dead.reason is not None and dead.reason.startswith(str(err))


@pytest.mark.parametrize("name", sorted(SILENT))
async def test_ne_sample_gets_no_ack_but_is_kept(listener, store, name) -> None:
    c = await client(listener)
    await c.send(sample(name))
    nxt = await c.call(oru("next-one"))  # the first frame the server sends answers this one
    await c.close()
    assert nxt is not None and msa(nxt) == ("AA", "next-one")
    statuses = {e.status for e in await list_entries(store) if e.control_id != "next-one"}
    assert statuses == {SILENT[name]}


# -- duplicates ------------------------------------------------------------------------------
async def test_duplicate_same_payload_gets_the_stored_ack_and_stores_nothing(listener, store):
    c = await client(listener)
    first = await c.call(oru("dup-1"))
    seq = await store.last_seq()
    again = await c.call(oru("dup-1"))
    await c.close()
    assert first is not None and msa(first) == ("AA", "dup-1")
    assert again == first
    assert await store.last_seq() == seq
    assert len(await list_entries(store, control_id="dup-1")) == 1


async def test_duplicate_key_with_other_payload_is_ae_205_and_dead_letter(listener, store):
    c = await client(listener)
    await c.call(oru("dup-2", value=80))
    seq = await store.last_seq()
    other = await c.call(oru("dup-2", value=95))
    await c.close()
    assert other is not None and msa(other) == ("AE", "dup-2") and err_code(other) == 205
    assert await store.last_seq() == seq
    dead = await list_entries(store, status="dead")
    assert [d.control_id for d in dead] == ["dup-2"]
    assert dead[0].payload == oru("dup-2", value=95)


async def test_same_control_id_from_another_sender_is_not_a_duplicate(listener, store):
    c = await client(listener)
    a = await c.call(oru("shared", app="MON1"))
    b = await c.call(oru("shared", app="MON2"))
    await c.close()
    assert a is not None and b is not None
    assert msa(a) == msa(b) == ("AA", "shared")


async def test_resent_reading_updates_instead_of_duplicating(listener, store):
    c = await client(listener)
    await c.call(oru("r-1"))
    first = {ch.id for ch in await store.changes(0) if ch.type == "Observation"}
    await c.call(oru("r-2"))  # the same reading again under a new control id
    await c.close()
    changes = [ch for ch in await store.changes(0) if ch.type == "Observation"]
    assert {ch.id for ch in changes} == first
    assert max(ch.version for ch in changes) == 2


# -- enhanced mode -----------------------------------------------------------------------------
@pytest.mark.parametrize(("msh15", "good", "bad"), [
    ("AL", "CA", "CR"), ("ER", None, "CR"), ("SU", "CA", None), ("NE", None, None),
])
async def test_enhanced_mode_follows_msh15(listener, store, msh15, good, bad):
    c = await client(listener)
    await c.send(oru(f"enh-{msh15}", msh15=msh15, msh16="NE"))
    await c.send(oru(f"bad-{msh15}", msh15=msh15, msh16="NE").replace(b"|P|2.6", b"|T|2.6"))
    await c.send(oru("marker"))  # original mode: always answered, and last
    got = []
    while not got or got[-1] != ("AA", "marker"):
        ack = await c.receive()
        assert ack is not None
        got.append(msa(ack))
    await c.close()
    expected = [(code, cid) for code, cid in ((good, f"enh-{msh15}"), (bad, f"bad-{msh15}")) if code]
    assert got == [*expected, ("AA", "marker")]
    entries = {e.control_id: e.status for e in await list_entries(store)}
    assert entries[f"enh-{msh15}"] == "accepted" and entries[f"bad-{msh15}"] == "dead"


async def test_enhanced_acks_arrive_in_order(listener, store):
    c = await client(listener)
    for i in range(5):
        await c.send(oru(f"ord-{i}", msh15="AL", msh16="NE", value=60 + i))
    acks = [await c.receive() for _ in range(5)]
    await c.close()
    assert [msa(a) for a in acks if a] == [("CA", f"ord-{i}") for i in range(5)]


# -- framing over the wire ---------------------------------------------------------------------
async def test_garbage_between_frames_is_skipped(listener, store):
    c = await client(listener)
    await c.send_raw(b"noise\r\n" + b"\x0b" + oru("g-1") + b"\x1c\x0d" + b"\x00\xff junk")
    await c.send(oru("g-2", value=81))
    acks = [await c.receive(), await c.receive()]
    await c.close()
    assert [msa(a) for a in acks if a] == [("AA", "g-1"), ("AA", "g-2")]


async def test_frame_split_over_many_writes(listener, store):
    c = await client(listener)
    data = b"\x0b" + oru("split") + b"\x1c\x0d"
    for i in range(0, len(data), 7):
        await c.send_raw(data[i : i + 7])
        await asyncio.sleep(0.001)
    ack = await c.receive()
    await c.close()
    assert ack is not None and msa(ack) == ("AA", "split")


async def test_oversized_frame_gets_ar_dead_letter_and_close(listener, store):
    c = await client(listener)
    big = oru("big") + b"NTE|1||" + b"x" * 40_000 + b"\r"
    ack = await c.call(big)
    closed = await c.receive()
    await c.close()
    assert ack is not None and msa(ack) == ("AR", "big")
    assert closed is None
    [dead] = await list_entries(store, status="dead")
    assert dead.control_id == "big" and dead.payload == big[:32_768]
    # other connections are still served
    c2 = await client(listener)
    ok = await c2.call(oru("after-big"))
    await c2.close()
    assert ok is not None and msa(ok) == ("AA", "after-big")


async def test_fifty_concurrent_connections(listener, store):
    async def one(i: int) -> tuple[str, str]:
        c = await client(listener)
        acks = [await c.call(oru(f"c{i}-{k}", app=f"DEV{i}", pid=f"P{i}", value=50 + k))
                for k in range(3)]
        await c.close()
        assert all(a is not None for a in acks)
        return msa(acks[-1])  # type: ignore[arg-type]

    results = await asyncio.gather(*(one(i) for i in range(50)))
    assert results == [("AA", f"c{i}-2") for i in range(50)]
    assert len(await list_entries(store, status="accepted", limit=500)) == 150
    assert store.commits < 150 + 1  # group commit: never more commits than messages


# -- inbox queries and replay ------------------------------------------------------------------
async def test_inbox_search_by_sender_patient_and_status(listener, store):
    c = await client(listener)
    await c.call(oru("s-1", app="MONA", pid="MRN-A"))
    await c.call(oru("s-2", app="MONB", pid="MRN-B"))
    await c.call(oru("s-3", app="MONB", pid="MRN-B").replace(b"|P|2.6", b"|T|2.6"))
    await c.close()
    assert [e.control_id for e in await list_entries(store, sender="MONB")] == ["s-3", "s-2"]
    by_patient = await list_entries(store, patient="urn:vitalgate:id:HOSP|MRN-A")
    assert [e.control_id for e in by_patient] == ["s-1"]
    assert [e.control_id for e in await list_entries(store, status="dead")] == ["s-3"]
    assert all("MRN" not in (e.reason or "") for e in await list_entries(store))


async def test_replay_of_a_dead_letter_links_the_outcome(store):
    ingestor = Ingestor(store, MappingContext())
    refused = await ingestor.ingest(oru("rp-1").replace(b"|P|2.6", b"|T|2.6"), "10.0.0.1:5")
    assert refused.status == "dead"
    [dead] = await list_entries(store, status="dead")
    # after a fix (here: the site now accepts processing id T) the dead letter is replayed
    ingestor.ctx = MappingContext(accepted_processing_ids=frozenset({"P", "T"}))
    result = await replay(ingestor, dead.pk)
    assert result.status == "accepted" and result.ack is not None
    assert msa(result.ack) == ("AA", "rp-1")
    old = await get_entry(store, dead.pk)
    assert old is not None and old.status == "replayed"
    [new] = await list_entries(store, status="accepted")
    assert old.reason is not None and old.reason.startswith("202 ")  # the first failure kept
    assert old.reason.endswith(f" | replayed as inbox #{new.pk}")
    assert new.peer == "10.0.0.1:5"
    with pytest.raises(LookupError):
        await replay(ingestor, dead.pk)


async def test_nul_bytes_in_msh_are_stored_on_every_database(listener, store):
    c = await client(listener)
    ack = await c.call(oru("nul\x00id", app="MO\x00N"))
    await c.close()
    assert ack is not None and msa(ack)[0] == "AA"
    [entry] = await list_entries(store)
    assert entry.control_id == "nul\ufffdid" and entry.payload == oru("nul\x00id", app="MO\x00N")


# -- TLS and allowlist -------------------------------------------------------------------------
async def test_allowlist_refuses_other_peers(store):
    from gateway.mllp import parse_allowlist

    server = MllpServer(Ingestor(store, MappingContext()),
                        ListenerConfig(port=0, allow=parse_allowlist("10.1.2.0/24")))
    await server.start()
    try:
        c = await client(server)
        await c.send(oru("blocked"))
        closed = await c.receive()
        await c.close()
    finally:
        await server.stop()
    assert closed is None
    assert await list_entries(store) == []


# -- ORU never overwrites what ADT owns ---------------------------------------------------------
async def test_oru_does_not_overwrite_the_adt_patient(listener, store):
    adt = (b"MSH|^~\\&|ADT|HOSP|VG|HOSP|20240301100000||ADT^A01|adt-1|P|2.5\r"
           b"EVN|A01|20240301100000\r"
           b"PID|||MRN1^^^HOSP^MR||DOE^JANE||19700101|F\r"
           b"PV1||I|ICU^1^3|||||||||||||||V1\r")
    c = await client(listener)
    first = await c.call(adt)
    patients = [ch for ch in await store.changes(0) if ch.type == "Patient"]
    await c.call(oru("after-adt-1"))
    await c.call(oru("after-adt-2", value=81))
    await c.close()
    assert first is not None and msa(first) == ("AA", "adt-1")
    assert len(patients) == 1
    after = [ch for ch in await store.changes(0) if ch.type == "Patient"]
    assert after == patients  # the ORUs' sparse PID copy was not written over it
    stored = await store.read("Patient", patients[0].id)
    assert stored is not None and b"1970-01-01" in stored.body


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_mllp_over_tls(store, tmp_path):
    import ssl

    from gateway.mllp import server_ssl_context

    cert, key = self_signed(tmp_path)
    server = MllpServer(Ingestor(store, MappingContext()),
                        ListenerConfig(port=0, ssl=server_ssl_context(str(cert), str(key))))
    await server.start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        async with MllpClient("localhost", server.port, ssl_context=ctx) as c:
            ack = await c.call(oru("tls-1"))
    finally:
        await server.stop()
    assert ack is not None and msa(ack) == ("AA", "tls-1")


async def test_idle_or_half_open_connection_is_closed(store):
    server = MllpServer(Ingestor(store, MappingContext()), ListenerConfig(port=0, idle_timeout=0.2))
    await server.start()
    try:
        c = await client(server)
        await c.send_raw(b"\x0bMSH|^~\\&|HALF")  # a frame started, then silence
        closed = await c.receive(timeout=5)
        await c.close()
        c2 = await client(server)  # the listener itself carries on
        ok = await c2.call(oru("after-idle"))
        await c2.close()
    finally:
        await server.stop()
    assert closed is None
    assert ok is not None and msa(ok) == ("AA", "after-idle")
    assert [e.control_id for e in await list_entries(store)] == ["after-idle"]  # nothing kept of the half frame
