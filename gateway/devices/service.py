"""Device feeds inside the node: poll ventilators and LAN monitors, store what they send.

``VITALGATE_DEVICES`` lists the endpoints, comma separated, each ``kind@host:port[#bed]``:

- ``pb840`` / ``pb980``: serial-over-TCP poll/response (``gateway.devices.pb840_client``);
- ``pb840-waves``: the ventilator's 50 Hz waveform port (``pb840_waveforms``);
- ``intellivue``: IntelliVue LAN Data Export over UDP (``intellivue_client``).

``#bed`` is the bed in HL7 PV1-3 notation (``ICU^3^1``): the device's data is associated with
the patient admitted to that bed by ADT (``associations``), marked unconfirmed until a
clinician confirms it. Every record is mapped by ``mappers`` in its client's task, serialised
and indexed there too (``index_rows``: outside the writer's transaction), and handed
to one ingest writer, which stores what all feeds produced since its last commit as one store
job (a poll cycle of every bed in one transaction, alongside the writer's group commit); a
client never waits for a commit before reading its next datagram or response (a device gets
no acknowledgement, so nothing is acknowledged early). A batch that fails is retried record by
record so one bad record loses only itself. Connection and clock status changes become status
Observations; undecodable input is kept as a dead letter in the inbox (``message_type`` names
the feed, ``sending_facility`` the endpoint) with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from fhir_server.storage import Store, WriteTx
from fhir_server.storage.types import Prepared
from gateway.inbox.records import DEAD, Sender, inbox_row
from gateway.inbox.schema import inbox
from mappers.association import bed_location_id, tag_unconfirmed
from mappers.device_status import clock_drift_observation, clock_drift_s
from mappers.intellivue import PollResult, device_id_for, intellivue_device, poll_to_fhir
from mappers.pb840 import (
    DecodedVentRecord,
    WaveSegment,
    connection_state_observation,
    vent_clock,
    vent_record_to_fhir,
)
from mappers.pb840.fhir import fhir_id as vent_fhir_id
from mappers.profiles import load_profile
from mappers.waveform import WAVES, waveform_observation

from .associations import Association, BedAssociations
from .index_rows import DeviceIndexer
from .intellivue_client import IntellivueClient, MonitorSession
from .pb840_client import DeviceStatusEvent, Pb840Client
from .pb840_waveforms import Pb840WaveformClient

__all__ = ["DeviceEndpoint", "DeviceIngest", "device_service", "parse_devices"]

log = logging.getLogger(__name__)

KIND_PROFILES = {"pb840": "medtronic-pb840", "pb980": "medtronic-pb980",
                 "intellivue": "philips-intellivue-mp", "pb840-waves": "medtronic-pb840"}


@dataclass(frozen=True, slots=True)
class DeviceEndpoint:
    kind: str
    host: str
    port: int
    bed: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}@{self.host}:{self.port}"

    @property
    def location_id(self) -> str | None:
        return bed_location_id(self.bed) if self.bed else None


def parse_devices(spec: str) -> list[DeviceEndpoint]:
    """``kind@host:port[#bed], ...`` -> endpoints; a clear ValueError for a bad item."""
    out = []
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        target, _, bed = item.partition("#")
        kind, at, address = target.partition("@")
        host, colon, port = address.rpartition(":")
        if not at or not colon or kind not in KIND_PROFILES or not port.isdigit():
            raise ValueError(f"device {item!r}: expected kind@host:port[#bed], kind one of "
                             f"{', '.join(KIND_PROFILES)}")
        ep = DeviceEndpoint(kind, host or "127.0.0.1", int(port), bed or None)
        if ep.bed:
            ep.location_id  # noqa: B018 - refuse a bad bed at start-up, not on the first record
        out.append(ep)
    return out


SETTINGS_REFRESH_S = 60.0
_SLOW_CATEGORIES = frozenset({"device-setting", "device-alarm-limit", "device-info", "device-alarm"})


def _category_code(res: dict[str, Any]) -> str | None:
    for cat in res.get("category", ()):
        for coding in cat.get("coding", ()):
            return str(coding.get("code"))
    return None


def _slow_key(res: dict[str, Any]) -> tuple[str, str] | None:
    """The key under which a Device or a slow-changing Observation is stored only on change."""
    if res["resourceType"] == "Device":
        return ("Device", res["id"])
    if res["resourceType"] == "Observation" and _category_code(res) in _SLOW_CATEGORIES:
        return (res.get("device", {}).get("reference", ""), res["code"]["coding"][-1].get("code", ""))
    return None


@dataclass
class IngestStats:
    records: int = 0
    resources: int = 0
    dead_letters: int = 0
    statuses: int = 0
    commits: int = 0  # ingest-writer transactions (a batch retried record by record counts each)
    lags_ms: list[float] = field(default_factory=list)  # receipt -> commit, per record
    # device time stamp -> commit (IntelliVue poll replies carry the monitor's clock, 10 ms
    # resolution): includes socket and event-loop queueing that ``lags_ms`` cannot see; only
    # meaningful while the device clock is right (the bench's simulators share our clock)
    source_lags_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        lags, source = sorted(self.lags_ms), sorted(self.source_lags_ms)

        def p99(values: list[float]) -> float | None:
            return round(values[min(len(values) - 1, int(len(values) * 0.99))], 2) if values else None

        return {"records": self.records, "resources": self.resources, "dead_letters": self.dead_letters,
                "commits": self.commits,
                "statuses": self.statuses, "lag_ms_p99": p99(lags), "lag_ms_max": lags[-1] if lags else None,
                "source_lag_ms_p99": p99(source)}


@dataclass(slots=True)
class _Record:
    """One device record's resources waiting for the ingest writer."""

    label: str
    resources: list[dict[str, Any]]
    prepared: list[Prepared | None]  # each resource's JSON and index rows, built before the queue
    received: float  # time.monotonic() at receipt
    device_time: datetime | None = None  # IntelliVue poll replies: the monitor's clock (site zone applied)


MAX_BATCH_RECORDS = 256
# A batch commits alone (a bulk write) and an MLLP ACK may wait for the one in progress: at 75
# beds a second's burst made batches of ~2,000 resources, 0.2-0.7 s of the writer each
MAX_BATCH_RESOURCES = 512
MAX_QUEUED_RECORDS = 8192  # past this the clients wait (back-pressure), nothing is dropped


class DeviceIngest:
    """Writes the decoded output of every device client; one instance per node."""

    def __init__(self, store: Store, associations: BedAssociations | None = None, site_tz: str = "UTC") -> None:
        self.store = store
        self.tz = ZoneInfo(site_tz)
        self._drifting: dict[str, bool] = {}
        self.associations = associations or BedAssociations(store)
        self.stats = IngestStats()
        self._devices_written: set[str] = set()
        self._bed_device: dict[str | None, str] = {}  # bed -> ventilator device id (for the wave port)
        self._last_setting: dict[tuple[str, str], tuple[bytes, float]] = {}
        self._vent_slow: dict[str, tuple[Any, float]] = {}  # device -> (raw slow fields, unchanged until)
        self._indexer: DeviceIndexer | None = None  # the series rows it keeps live as long as the node
        self._queue: asyncio.Queue[_Record] | None = None
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the ingest writer; without it every record is written (and awaited) on its own."""
        if self._writer is None:
            self._queue = asyncio.Queue(MAX_QUEUED_RECORDS)
            self._writer = asyncio.create_task(self._write_loop(), name="device-ingest-writer")

    def backlog(self) -> tuple[int, float | None]:
        """(records queued for the ingest writer, age in ms of the oldest): the data a lag
        percentile over committed records cannot see yet."""
        if self._queue is None or self._queue.empty():
            return 0, None
        oldest = self._queue._queue[0]  # type: ignore[attr-defined]  # asyncio.Queue's deque, read only
        return self._queue.qsize(), round((time.monotonic() - oldest.received) * 1000, 2)

    async def close(self) -> None:
        """Store what is queued, then stop the writer."""
        if self._writer is None or self._queue is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), 10)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = self._queue = None

    async def on_vent_record(self, ep: DeviceEndpoint, record: DecodedVentRecord, received: float) -> None:
        profile = load_profile(KIND_PROFILES[ep.kind])
        device_id = vent_fhir_id(record.device_id)
        self._bed_device[ep.bed] = device_id
        assoc = await self._association(device_id, ep)
        # settings, alarm limits and the alarm panel unchanged since they were last stored (and
        # stored less than SETTINGS_REFRESH_S ago): not even built, _changed_only would drop them
        slow = (assoc.patient_ref, record.mode.composed,
                tuple((v.field, v.raw) for v in record.values if v.entry.kind in ("setting", "alarm-limit")),
                tuple((a.field, a.state) for a in record.alarms))
        seen = self._vent_slow.get(device_id)
        unchanged = seen is not None and seen[0] == slow and time.monotonic() < seen[1]
        mapped = vent_record_to_fhir(record, profile, assoc.patient_ref, include_settings=not unchanged,
                                     include_alarms=not unchanged)
        resources = self._changed_only(mapped)
        if not unchanged:  # the fast path holds until the first of these is due for its refresh
            stored = [self._last_setting[k][1] for k in map(_slow_key, mapped) if k in self._last_setting]
            self._vent_slow[device_id] = (slow, min(stored, default=time.monotonic()) + SETTINGS_REFRESH_S)
        resources += self._vent_clock(record, device_id, profile.timing.clock_drift_limit_s, assoc)
        await self._write(resources, ep, assoc, received)

    def _vent_clock(self, record: DecodedVentRecord, device_id: str, limit: float | None,
                    assoc: Association) -> list[dict[str, Any]]:
        """A clock-drift status Observation when the ventilator clock crosses the limit (either way)."""
        clock = vent_clock(record, self.tz)
        if clock is None or limit is None:
            return []
        drift = clock_drift_s(clock, record.received_at)
        drifting = abs(drift) > limit
        if self._drifting.get(device_id, False) == drifting:
            return []
        self._drifting[device_id] = drifting
        log.warning("device %s: ventilator clock %+.0f s from gateway time", device_id, drift)
        return [clock_drift_observation(f"Device/{device_id}", drift, limit, record.received_at,
                                        assoc.patient_ref)]

    def _changed_only(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The Device, settings, alarm limits, alarm status and device information are stored when
        they change (and at least every ``SETTINGS_REFRESH_S``), not on every 2 s poll: a change
        is the clinical event; repeating unchanged values would double the ventilator's volume."""
        now = time.monotonic()
        out = []
        for res in resources:
            key = _slow_key(res)
            if key is None:
                out.append(res)
                continue
            if key[0] == "Device":
                value = orjson.dumps(res, default=str, option=orjson.OPT_SORT_KEYS)
            else:
                value = orjson.dumps({k: v for k, v in res.items() if k.startswith(("value", "component"))},
                                     default=str, option=orjson.OPT_SORT_KEYS)
            seen = self._last_setting.get(key)
            if seen is not None and seen[0] == value and now - seen[1] < SETTINGS_REFRESH_S:
                continue
            self._last_setting[key] = (value, now)
            out.append(res)
        return out

    async def on_vent_waves(self, ep: DeviceEndpoint, seg: WaveSegment, at: datetime) -> None:
        received = time.monotonic()
        device_id = self._bed_device.get(ep.bed) or vent_fhir_id(f"{ep.kind}-{ep.host}-{ep.port}")
        assoc = await self._association(device_id, ep)
        start = at.replace(microsecond=at.microsecond - at.microsecond % 1000)
        resources = [waveform_observation(spec=WAVES[key], device_ref=f"Device/{device_id}",
                                          start=start, period_ms=20.0, samples=samples,
                                          subject_ref=assoc.patient_ref)
                     for key, samples in (("paw", seg.pressure), ("flow", seg.flow))]
        await self._write(resources, ep, assoc, received)

    async def on_intellivue(self, ep: DeviceEndpoint, session: MonitorSession, poll: PollResult,
                            at: datetime) -> None:
        # ``at`` is when the reply's first datagram arrived: lag counts from there, not from now
        received = time.monotonic() - max(0.0, (datetime.now(UTC) - at).total_seconds())
        profile = load_profile(KIND_PROFILES[ep.kind])
        device_id = device_id_for(session.mds.system_id or ep.label)
        assoc = await self._association(device_id, ep)
        mapped = poll_to_fhir(poll, profile, f"Device/{device_id}", at, assoc.patient_ref)
        resources = mapped.resources
        key = f"{device_id}|{session.associated_at.isoformat()}"
        if key not in self._devices_written:  # once per association, not per poll
            self._devices_written.add(key)
            loc = ep.location_id
            resources = [intellivue_device(session.mds, profile, f"Location/{loc}" if loc else None), *resources]
        if mapped.problems:
            payload = json.dumps({"poll_number": poll.poll_number, "problems": mapped.problems}).encode()
            await self.dead_letter(ep, payload, "; ".join(mapped.problems)[:500])
        device_time = poll.device_time.replace(tzinfo=self.tz) if poll.device_time is not None else None
        await self._write(resources, ep, assoc, received, device_time)

    async def on_status(self, ep: DeviceEndpoint, event: DeviceStatusEvent) -> None:
        device_id = self._status_device(ep, event)
        assoc = await self._association(device_id, ep)
        if event.status in ("clock-drift", "clock-ok"):
            limit = load_profile(KIND_PROFILES[ep.kind]).timing.clock_drift_limit_s or 0.0
            obs = clock_drift_observation(f"Device/{device_id}", event.drift_s or 0.0, limit, event.at,
                                          assoc.patient_ref)
        else:
            obs = connection_state_observation(device_id, event.status, event.at, event.reason,
                                               assoc.patient_ref)
            obs["device"] = {"reference": f"Device/{device_id}"}
        self.stats.statuses += 1
        log.info("device %s: %s (%s)", ep.label, event.status, event.reason)
        await self._write([obs], ep, assoc, time.monotonic())

    def _status_device(self, ep: DeviceEndpoint, event: DeviceStatusEvent) -> str:
        if ep.kind == "intellivue" and event.device_id:
            return device_id_for(event.device_id)
        if event.device_id:
            return vent_fhir_id(event.device_id)
        return vent_fhir_id(f"{ep.kind}-{ep.host}-{ep.port}")

    async def dead_letter(self, ep: DeviceEndpoint, raw: bytes, reason: str) -> None:
        digest = hashlib.sha256(raw).hexdigest()
        sender = Sender(app=ep.kind, facility=ep.label, control_id=f"{time.time_ns()}",
                        message_type=f"{ep.kind}-record")
        row = inbox_row(payload=raw, digest=digest, sender=sender, peer=ep.label, status=DEAD, ack=None,
                        reason=reason)

        async def job(tx: WriteTx) -> None:
            tx.insert(inbox, [row])

        try:
            await self.store.write(job)
            self.stats.dead_letters += 1
        except Exception as exc:  # noqa: BLE001 - a lost dead letter is logged, the feed goes on
            log.error("device %s: dead letter not stored: %s", ep.label, exc)
        log.warning("device %s: dead letter: %s", ep.label, reason)

    async def _association(self, device_id: str, ep: DeviceEndpoint) -> Association:
        if not ep.bed:
            return Association(None, False)
        try:
            return await self.associations.resolve(device_id, ep.location_id)
        except Exception as exc:  # noqa: BLE001 - no association is better than no data
            log.error("device %s: association lookup failed: %s", ep.label, exc)
            return Association(None, False)

    async def _write(self, resources: list[dict[str, Any]], ep: DeviceEndpoint, assoc: Association,
                     received: float, device_time: datetime | None = None) -> None:
        if assoc.patient_ref and not assoc.confirmed:
            for res in resources:
                if res["resourceType"] == "Observation":
                    tag_unconfirmed(res)
        if self._indexer is None:
            self._indexer = DeviceIndexer(self.store.indexer)
        prepared = [self._indexer.prepare(res) for res in resources]
        record = _Record(ep.label, resources, prepared, received, device_time)
        if self._queue is None:
            await self._store([record])
        else:
            await self._queue.put(record)

    async def _write_loop(self) -> None:
        """Whatever every feed queued while the previous commit ran goes into the next one.

        No deliberate wait for a bigger group: holding the first record until it was 150 ms
        old (groups up to 1,024) cut the commits at 100 beds from ~390 to ~150 per 30 s, but
        node CPU by only ~2 % (26.4 -> 25.8 s per bed-hour) and not the p99 lag (0.60-0.63 s
        -> 0.65-0.75 s), and it added 150 ms to every record at low load (1 bed: p50 4 ms ->
        154 ms), which is 150 ms more before the alerting engine sees a value."""
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            size = len(batch[0].resources)
            while len(batch) < MAX_BATCH_RECORDS and not queue.empty():
                size += len(queue._queue[0].resources)  # type: ignore[attr-defined]  # asyncio.Queue's deque, read only
                if size > MAX_BATCH_RESOURCES:
                    break
                batch.append(queue.get_nowait())
            try:
                await self._store(batch)
            except Exception:  # noqa: BLE001 - never let the writer die
                log.exception("device ingest: batch of %d records failed", len(batch))
            finally:
                for _ in batch:
                    queue.task_done()

    async def _store(self, batch: list[_Record]) -> None:
        async def job(tx: WriteTx) -> None:
            for record in batch:
                for res, prepared in zip(record.resources, record.prepared, strict=True):
                    tx.put(res["resourceType"], res["id"], res, method="PUT", prepared=prepared)

        try:
            await self.store.write(job, bulk=True)
        except Exception as exc:  # noqa: BLE001 - keep the feeds alive; the data is logged as lost
            if len(batch) > 1:  # one bad record must not lose the others: each on its own
                for record in batch:
                    await self._store([record])
                return
            log.error("device %s: store failed for %d resources: %s", batch[0].label,
                      len(batch[0].resources), exc)
            return
        done, now = time.monotonic(), datetime.now(UTC)
        stats = self.stats
        stats.commits += 1
        for record in batch:
            stats.records += 1
            stats.resources += len(record.resources)
            if len(stats.lags_ms) < 1_000_000:
                stats.lags_ms.append((done - record.received) * 1000)
            if record.device_time is not None and len(stats.source_lags_ms) < 1_000_000:
                stats.source_lags_ms.append((now - record.device_time).total_seconds() * 1000)


def _client(ep: DeviceEndpoint, ingest: DeviceIngest, site_tz: str) -> Any:
    async def status(event: DeviceStatusEvent) -> None:
        await ingest.on_status(ep, event)

    async def error(raw: bytes, reason: str) -> None:
        await ingest.dead_letter(ep, raw, reason)

    if ep.kind == "intellivue":
        async def poll(session: MonitorSession, result: PollResult, at: datetime) -> None:
            await ingest.on_intellivue(ep, session, result, at)

        return IntellivueClient(ep.host, ep.port, load_profile(KIND_PROFILES[ep.kind]), on_poll=poll,
                                on_status=status, on_error=error, site_tz=site_tz)
    if ep.kind == "pb840-waves":
        async def segment(seg: WaveSegment, at: datetime) -> None:
            await ingest.on_vent_waves(ep, seg, at)

        return Pb840WaveformClient(ep.host, ep.port, on_segment=segment, on_error=error)

    async def record(rec: DecodedVentRecord) -> None:
        await ingest.on_vent_record(ep, rec, time.monotonic())

    return Pb840Client(ep.host, ep.port, load_profile(KIND_PROFILES[ep.kind]), on_record=record,
                       on_status=status, on_error=error)


@contextlib.asynccontextmanager
async def device_service(settings: Any, store: Store) -> AsyncIterator[DeviceIngest | None]:
    """Composition-root part: run one client per ``VITALGATE_DEVICES`` endpoint."""
    endpoints = parse_devices(getattr(settings, "devices", "") or "")
    if not endpoints:
        yield None
        return
    site_tz = getattr(settings, "site_tz", "UTC")
    ingest = DeviceIngest(store, site_tz=site_tz)
    ingest.start()
    clients = [_client(ep, ingest, site_tz) for ep in endpoints]
    tasks = [asyncio.create_task(c.run(), name=f"device-{ep.label}") for c, ep in zip(clients, endpoints,
                                                                                       strict=True)]
    log.info("device feeds: %s", ", ".join(ep.label for ep in endpoints))
    try:
        yield ingest
    finally:
        for c in clients:
            c.stop()
        done, pending = await asyncio.wait(tasks, timeout=5)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ingest.close()
        await ingest.associations.close()
