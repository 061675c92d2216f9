"""Device feeds in the node, end to end on real sockets: PB840 poll/response and waveform port
(TCP), IntelliVue (UDP), ADT from MLLP ingest; stored FHIR, bed association (unconfirmed, then
confirmed by a clinician's PUT), status Observations and dead letters."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import orjson
import pytest
from fhir.resources.R4B.deviceusestatement import DeviceUseStatement
from fhir.resources.R4B.observation import Observation
from sqlalchemy import select

from fhir_server.core import FhirRequest, ServerContext, handle
from fhir_server.storage import Store, loads
from gateway.devices.associations import BedAssociations
from gateway.devices.service import DeviceIngest, device_service, parse_devices
from gateway.inbox.schema import inbox
from gateway.mllp.ingest import Ingestor
from gateway.settings import Settings
from gateway.simulators import BedFeed, IntellivueSimulator, Pb840Simulator, Physiology, VentSettings, adt_admit
from gateway.simulators.pb840 import Pb840WaveformPort
from mappers.association import UNCONFIRMED_TAG, bed_location_id, dus_id
from mappers.hl7v2 import MappingContext
from mappers.waveform import is_waveform

CTX = ServerContext(store=None, base_url="http://test/fhir")  # type: ignore[arg-type]


def test_parse_devices() -> None:
    eps = parse_devices("pb840@127.0.0.1:4001#ICU^3^1, intellivue@10.1.2.3:24105,pb840-waves@h:5")
    assert [(e.kind, e.host, e.port, e.bed) for e in eps] == [
        ("pb840", "127.0.0.1", 4001, "ICU^3^1"), ("intellivue", "10.1.2.3", 24105, None),
        ("pb840-waves", "h", 5, None)]
    assert eps[0].location_id == bed_location_id("ICU^3^1")
    for bad in ("pb999@h:1", "pb840@h", "pb840h:1", "pb840@h:port"):
        with pytest.raises(ValueError, match="expected kind@host:port"):
            parse_devices(bad)


async def _search(store: Store, type_: str, *params: tuple[str, str]) -> list[dict]:
    ctx = ServerContext(store=store, base_url="http://test/fhir")
    resp = await handle(FhirRequest("GET", type_, tuple(params) + (("_count", "1000"),)), ctx)
    body = loads(orjson.dumps(resp.body) if isinstance(resp.body, dict) else resp.body)
    return [e["resource"] for e in body.get("entry", ()) if e.get("search", {}).get("mode", "match") == "match"]


async def until(predicate, timeout: float = 8.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_device_feeds_end_to_end(store: Store) -> None:
    bed = BedFeed(3)
    phys = Physiology("stable", 3)
    vent = Pb840Simulator(phys, VentSettings(serial="3510012345"))
    waves = Pb840WaveformPort(phys, VentSettings(serial="3510012345"), chunk_s=0.1)
    monitor = IntellivueSimulator(Physiology("stable", 4), clock_offset_s=900)
    for sim in (vent, waves, monitor):
        await sim.start()
    # the patient is admitted to ICU^3^1 through the real MLLP ingest pipeline
    ingestor = Ingestor(store, MappingContext(site_tz=ZoneInfo("UTC")))
    assert (await ingestor.ingest(adt_admit(bed, datetime.now(UTC), "ADT1"))).outcome == "accept"
    settings = Settings(devices=f"pb840@127.0.0.1:{vent.port}#ICU^3^1,"
                                f"pb840-waves@127.0.0.1:{waves.port}#ICU^3^1,"
                                f"intellivue@127.0.0.1:{monitor.port}#ICU^3^1")
    try:
        async with device_service(settings, store) as ingest:
            assert isinstance(ingest, DeviceIngest)
            ingest.associations = BedAssociations(store, ttl_s=0.0)

            async def vent_data() -> bool:
                return ingest.stats.records >= 6 and bool(await _search(store, "Observation", ("code", "151792")))

            await until(vent_data)
            monitor.send_raw(b"\xe1\x00\x00\x02\x00\x02\xff\xff")  # undecodable: a dead letter
            await asyncio.sleep(0.3)
            dus_ref = dus_id("intellivue-0009fb123456")
            stored = await store.read("DeviceUseStatement", dus_ref)
            assert stored is not None
            dus = loads(stored.body)
            DeviceUseStatement.model_validate(dus)
            assert dus["meta"]["tag"][0]["code"] == "association-unconfirmed"
            patient = dus["subject"]["reference"]
            # a clinician confirms the association with a plain FHIR PUT
            confirmed = {k: v for k, v in dus.items() if k != "meta"}
            confirmed["extension"] = [{"url": dus["extension"][0]["url"], "valueCode": "confirmed"},
                                      *dus["extension"][1:]]
            confirmed["source"] = {"reference": "Practitioner/nurse-1"}
            ctx = ServerContext(store=store, base_url="http://test/fhir")
            resp = await handle(FhirRequest("PUT", f"DeviceUseStatement/{dus_ref}", resource=confirmed), ctx)
            assert resp.status == 200
            mark = datetime.now(UTC)
            await asyncio.sleep(1.5)
    finally:
        for sim in (vent, waves, monitor):
            await sim.close()

    obs = await _search(store, "Observation", ("subject", patient))
    assert obs, "device data reached the bed's patient"
    for o in obs[:50]:
        Observation.model_validate(o)
    hr = [o for o in obs if any(c.get("code") == "147842" for c in o["code"]["coding"])]
    assert hr and all(o["device"]["reference"] == "Device/intellivue-0009fb123456" for o in hr)
    early = [o for o in hr if datetime.fromisoformat(o["effectiveDateTime"]) < mark]
    late = [o for o in hr if datetime.fromisoformat(o["effectiveDateTime"]) > mark]
    assert early and all(UNCONFIRMED_TAG["code"] in {t["code"] for t in o["meta"]["tag"]} for o in early)
    assert late and all(UNCONFIRMED_TAG["code"] not in {t["code"] for t in o.get("meta", {}).get("tag", ())}
                        for o in late)
    wave_obs = [o for o in obs if is_waveform(o)]
    codes = {o["code"]["coding"][0]["code"] for o in wave_obs}
    assert {"131330", "151792", "151764"} <= codes  # monitor ECG, ventilator pressure and flow
    paw = next(o for o in wave_obs if o["code"]["coding"][0]["code"] == "151792")
    assert len(paw["valueSampledData"]["data"].split()) == 50 and str(paw["valueSampledData"]["period"]) == "20.0"
    vent_obs = [o for o in obs if o["device"]["reference"].startswith("Device/medtronic-840-3510012345")]
    assert any(o["code"]["coding"][0]["code"] == "9279-1" for o in vent_obs)  # total resp rate
    rr = [o for o in vent_obs if o["code"]["coding"][0]["code"] == "9279-1"]
    settings = [o for o in vent_obs if o["category"][0]["coding"][0]["code"] == "device-setting"]
    codes_seen = [o["code"]["coding"][-1]["code"] for o in settings]
    assert rr and settings and len(codes_seen) == len(set(codes_seen))  # unchanged settings: stored once
    drift = await _search(store, "Observation", ("code", "urn:vitalgate:device-status|clock-drift"))
    assert drift and drift[0]["valueQuantity"]["value"] > 800
    history = await store.history("DeviceUseStatement", dus_ref)
    assert len(history) >= 2  # inferred, then confirmed: every change is a version
    dead = (await store.fetch(select(inbox.c.status, inbox.c.message_type, inbox.c.reason)
                              .where(inbox.c.status == "dead"))).all()
    assert any(r[1] == "intellivue-record" and "claims" in r[2] for r in dead)


async def test_bad_ventilator_responses_become_dead_letters(store: Store) -> None:
    """A serial device server answering with a lying byte count: no data, one dead letter per poll."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while await reader.readuntil(b"\r"):
                writer.write(b"MISCF,1225,169 ,\x02" + b"12:00 ," * 3 + b"\x03\r")
                await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with device_service(Settings(devices=f"pb840@127.0.0.1:{port}"), store) as ingest:
            assert ingest is not None

            async def dead() -> bool:
                return ingest.stats.dead_letters >= 1

            await until(dead)
    finally:
        server.close()
    rows = (await store.fetch(select(inbox.c.message_type, inbox.c.sending_facility, inbox.c.reason,
                                     inbox.c.payload).where(inbox.c.status == "dead"))).all()
    assert rows and rows[0][0] == "pb840-record" and rows[0][1] == f"pb840@127.0.0.1:{port}"
    assert "1225" in rows[0][2] and rows[0][3].startswith(b"MISCF,1225")
    assert ingest.stats.records == 1  # only the connection-state Observation, no ventilator data


async def test_unchanged_ventilator_settings_are_not_rebuilt_but_a_change_is_stored(store: Store) -> None:
    """The ingest's fast path (settings, limits and alarms unchanged: not even mapped) stores the
    same as mapping everything and dropping the unchanged: measured values every poll, a changed
    setting at once."""
    from gateway.devices.service import DeviceEndpoint
    from gateway.simulators.pb840 import encode_miscf
    from mappers.pb840 import decode_response
    from mappers.profiles import load_profile

    profile = load_profile("medtronic-pb840")
    ingest = DeviceIngest(store)
    ep = DeviceEndpoint("pb840", "127.0.0.1", 1)
    vitals = Physiology("stable", 1).vitals

    async def poll(at: datetime, settings: VentSettings) -> int:
        before = ingest.stats.resources
        raw = encode_miscf(vitals, settings, at.astimezone())
        await ingest.on_vent_record(ep, decode_response(raw, profile, received_at=at), 0.0)
        return ingest.stats.resources - before

    t0 = datetime.now(UTC).replace(microsecond=0)
    first = await poll(t0, VentSettings(set_rr=14.0))
    again = await poll(t0.replace(second=(t0.second + 2) % 60), VentSettings(set_rr=14.0))
    changed = await poll(t0.replace(second=(t0.second + 4) % 60), VentSettings(set_rr=16.0))
    assert first > again > 0  # the Device, settings, limits and alarm panel only the first time
    assert changed == again + 1  # plus the one setting that changed
    settings = await _search(store, "Observation", ("category", "urn:vitalgate:observation-category|device-setting"))
    rates = [o["valueQuantity"]["value"] for o in settings if o["code"]["coding"][-1]["code"] == "MISCF-13"]
    assert sorted(rates) == [14, 16]  # MISCF field 13: set respiratory rate


async def test_a_burst_commits_in_bulk_batches_bounded_in_resources(store: Store) -> None:
    """The ingest writer's batches hold at most MAX_BATCH_RESOURCES resources (a record is never
    split), each committed alone as a bulk write: an MLLP ACK waits for at most one of them."""
    import time

    from gateway.devices.associations import Association
    from gateway.devices.service import MAX_BATCH_RESOURCES, DeviceEndpoint

    ingest = DeviceIngest(store)
    ingest.start()
    ep = DeviceEndpoint("pb840", "127.0.0.1", 1)
    holding, release = asyncio.Event(), asyncio.Event()

    async def busy(tx) -> None:  # the writer's transaction in progress while the burst arrives
        holding.set()
        await release.wait()

    def obs(record: int, i: int) -> dict:
        return {"resourceType": "Observation", "id": f"burst-{record}-{i}", "status": "final",
                "code": {"coding": [{"system": "urn:test", "code": str(i)}]},
                "effectiveDateTime": "2026-11-29T06:00:00Z", "valueQuantity": {"value": i}}

    first = asyncio.create_task(store.write(busy))
    await holding.wait()
    per_record = MAX_BATCH_RESOURCES // 2 + 1  # two such records never fit one batch
    for record in range(3):
        await ingest._write([obs(record, i) for i in range(per_record)], ep, Association(None, False),
                            time.monotonic())
    release.set()
    await first
    await ingest.close()  # stores what is queued
    assert (ingest.stats.commits, ingest.stats.records, ingest.stats.resources) == (3, 3, 3 * per_record)
    assert len(await _search(store, "Observation", ("code", "urn:test|0"))) == 3
