"""Device-patient association follows the change log: an admission reaches a device's data,
and a clinician's correction overrides the bed, without waiting for a cache to expire; the
index rows a device Observation is written with (vendor coding kept, not indexed)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

from fhir_server.core import FhirRequest, ServerContext, handle
from fhir_server.storage import Store, loads
from gateway.devices.associations import Association, BedAssociations
from gateway.devices.service import DeviceEndpoint, DeviceIngest
from gateway.mllp.ingest import Ingestor
from gateway.simulators import BedFeed, adt_admit
from mappers.association import bed_location_id, device_use_statement
from mappers.hl7v2 import MappingContext
from mappers.pb840 import decode_response
from mappers.profiles import load_profile
from mappers.terminology import MDC_SYSTEM, VENDOR_CODE_PREFIX

SAMPLE = Path("/work/shared/samples/pb840/mdpnp-pb840cpp_pb840_MISCF_sample.bin")


async def _search(store: Store, type_: str, *params: tuple[str, str]) -> list[dict]:
    resp = await handle(FhirRequest("GET", type_, tuple(params)), ServerContext(store=store, base_url="http://t/fhir"))
    body = loads(orjson.dumps(resp.body) if isinstance(resp.body, dict) else resp.body)
    return [e["resource"] for e in body.get("entry", ()) if e.get("search", {}).get("mode", "match") == "match"]


async def _until(check, timeout: float = 8.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_admission_and_correction_reach_the_association_before_the_ttl(store: Store) -> None:
    bed = BedFeed(7)
    location = bed_location_id("ICU^7^1")
    assoc = BedAssociations(store, ttl_s=3600.0, watch_s=0.05)  # only the change log can refresh it
    try:
        assert await assoc.resolve("vent-7", location) == Association(None, False)
        ingestor = Ingestor(store, MappingContext(site_tz=ZoneInfo("UTC")))
        assert (await ingestor.ingest(adt_admit(bed, datetime.now(UTC), "ADT7"))).outcome == "accept"

        async def admitted() -> bool:
            return (await assoc.resolve("vent-7", location)).patient_ref is not None

        await _until(admitted)
        found = await assoc.resolve("vent-7", location)
        assert found.patient_ref and found.patient_ref.startswith("Patient/") and not found.confirmed
        # a clinician corrects the association to another patient (a FHIR PUT of the statement)
        corrected = device_use_statement("vent-7", "Patient/other", location, datetime.now(UTC),
                                         status="confirmed")
        resp = await handle(FhirRequest("PUT", f"DeviceUseStatement/{corrected['id']}", resource=corrected),
                            ServerContext(store=store, base_url="http://t/fhir"))
        assert resp.status in (200, 201)

        async def confirmed() -> bool:
            return await assoc.resolve("vent-7", location) == Association("Patient/other", True)

        await _until(confirmed)
    finally:
        await assoc.close()


async def test_vendor_coding_is_stored_but_only_standard_codings_are_indexed(store: Store) -> None:
    profile = load_profile("medtronic-pb840")
    ingest = DeviceIngest(store, BedAssociations(store))
    record = decode_response(SAMPLE.read_bytes(), profile, received_at=datetime.now(UTC))
    await ingest.on_vent_record(DeviceEndpoint("pb840", "127.0.0.1", 1), record, 0.0)
    await ingest.associations.close()
    vendor = f"{VENDOR_CODE_PREFIX}pb840"
    peak = await _search(store, "Observation", ("code", f"{MDC_SYSTEM}|151973"))  # PPEAK
    assert len(peak) == 1
    codings = peak[0]["code"]["coding"]
    assert any(c["system"] == vendor for c in codings)  # the device's own code is kept ...
    ppeak = next(c["code"] for c in codings if c["system"] == vendor)
    assert await _search(store, "Observation", ("code", f"{vendor}|{ppeak}")) == []  # ... not indexed
    settings = await _search(store, "Observation", ("category", "urn:vitalgate:observation-category|device-setting"))
    only_vendor = next(s for s in settings if all(c["system"] == vendor for c in s["code"]["coding"]))
    code = only_vendor["code"]["coding"][0]["code"]
    assert [o["id"] for o in await _search(store, "Observation", ("code", f"{vendor}|{code}"))] == [only_vendor["id"]]


async def test_device_use_statements_are_searchable(store: Store) -> None:
    dus = device_use_statement("vent-9", "Patient/p9", bed_location_id("ICU^9^1"), datetime.now(UTC))
    await store.put("DeviceUseStatement", dus["id"], dus)
    for params in ((("device", "Device/vent-9"),), (("patient", "p9"),), (("subject", "Patient/p9"),),
                   (("_tag", "urn:vitalgate:association|association-unconfirmed"),)):
        assert [r["id"] for r in await _search(store, "DeviceUseStatement", *params)] == [dus["id"]], params
    assert await _search(store, "DeviceUseStatement", ("device", "Device/other")) == []
