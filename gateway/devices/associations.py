"""Resolve which patient a device's data belongs to, through its bed (see ``mappers.association``).

Per device: the stored ``DeviceUseStatement`` wins (a clinician-confirmed one is never changed
here); otherwise the patient of the in-progress Encounter at the device's bed, found with the
FHIR search ``Encounter?location=Location/<bed>&status=in-progress``. A new or changed
inference is written as a new version of the DeviceUseStatement (the change history).

Answers are cached per device and invalidated from the change log: a watcher reads the
entries of ``Encounter`` (an admission, transfer or discharge: every device is looked up
again) and ``DeviceUseStatement`` (a clinician's confirmation or correction: that device) at
most ``watch_s`` after they commit, from any process writing the database. A stale answer
is still used while one refresh per device runs in the background, so the ingest path waits
for a database read only on a device's first record (or after ``2 * ttl_s`` of silence);
``ttl_s`` bounds how long an answer is trusted should the watcher miss something. Before,
every device searched every 10 s whether anything had changed or not: at 50 beds, ~10
searches a second on the event loop. Concurrent lookups of one device share one refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from fhir_server.core import FhirRequest, ServerContext, handle
from fhir_server.storage import Store, WriteTx, loads
from mappers.association import association_of, device_use_statement, dus_id

_WATCHED = ("Encounter", "DeviceUseStatement")

__all__ = ["Association", "BedAssociations"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Association:
    patient_ref: str | None
    confirmed: bool


class BedAssociations:
    def __init__(self, store: Store, *, ttl_s: float = 120.0, watch_s: float = 0.5) -> None:
        self.store = store
        self.ctx = ServerContext(store=store, base_url="http://vitalgate.local/fhir")
        self.ttl_s = ttl_s
        self.watch_s = watch_s
        self._cache: dict[str, tuple[float, Association]] = {}  # device -> (lookup started, answer)
        self._refreshing: dict[str, asyncio.Task[Association]] = {}
        self._dus_device: dict[str, str] = {}  # DeviceUseStatement id -> device id
        self._changed: dict[str, float] = {}  # device -> when its DeviceUseStatement last changed
        self._all_changed = 0.0  # when an Encounter last changed (any bed)
        self._watcher: asyncio.Task[None] | None = None

    async def resolve(self, device_id: str, bed_location_id: str | None) -> Association:
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="association-watch")
        hit = self._cache.get(device_id)
        if hit is not None:
            age = time.monotonic() - hit[0]
            stale = max(self._all_changed, self._changed.get(device_id, 0.0)) >= hit[0]
            if age < self.ttl_s and not stale:
                return hit[1]
            if age < 2 * self.ttl_s:  # still good enough to use while the refresh runs
                self._refresh(device_id, bed_location_id)
                return hit[1]
        return await asyncio.shield(self._refresh(device_id, bed_location_id))

    async def close(self) -> None:
        """Cancel the watcher and the refreshes still running (at shutdown)."""
        tasks: list[asyncio.Task[Any]] = list(self._refreshing.values())
        if self._watcher is not None:
            tasks.append(self._watcher)
            self._watcher = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self) -> None:
        cursor = await self.store.last_seq()
        while True:
            await asyncio.sleep(self.watch_s)
            try:
                cursor = await self._read_changes(cursor)
            except Exception as exc:  # noqa: BLE001 - the TTL still bounds a missed change
                log.error("association watcher: change log read failed: %s", exc)

    async def _read_changes(self, cursor: int) -> int:
        """Invalidate what changed after ``cursor``; the new cursor. Reading up to the head
        (not just to the last watched entry) keeps each scan to the last ``watch_s``."""
        head = await self.store.last_seq()
        while cursor < head:
            changes = await self.store.changes(cursor, 1000, _WATCHED)
            now = time.monotonic()
            for ch in changes:
                if ch.type == "Encounter":
                    self._all_changed = now
                elif ch.id in self._dus_device:
                    self._changed[self._dus_device[ch.id]] = now
            if len(changes) < 1000:
                return max(head, changes[-1].seq if changes else 0)
            cursor = changes[-1].seq
        return cursor

    def _refresh(self, device_id: str, bed_location_id: str | None) -> asyncio.Task[Association]:
        task = self._refreshing.get(device_id)
        if task is None:
            task = asyncio.create_task(self._refresh_now(device_id, bed_location_id),
                                       name=f"association-{device_id}")
            self._refreshing[device_id] = task
        return task

    async def _refresh_now(self, device_id: str, bed_location_id: str | None) -> Association:
        started = time.monotonic()
        self._dus_device[dus_id(device_id)] = device_id
        try:
            found = await self._resolve(device_id, bed_location_id)
        except Exception as exc:  # noqa: BLE001 - the cached answer (if any) stays in use
            log.error("device %s: association lookup failed: %s", device_id, exc)
            hit = self._cache.get(device_id)
            return hit[1] if hit is not None else Association(None, False)
        finally:
            self._refreshing.pop(device_id, None)
        self._cache[device_id] = (started, found)
        return found

    async def _resolve(self, device_id: str, bed: str | None) -> Association:
        stored = await self.store.read("DeviceUseStatement", dus_id(device_id))
        current: tuple[str | None, bool] = (None, False)
        if stored is not None and not stored.deleted:
            current = association_of(loads(stored.body))
            if current[1]:
                return Association(current[0], True)  # confirmed by a clinician: never overridden
        patient = await self._patient_at(bed) if bed else None
        if patient is None:
            return Association(current[0], False)
        if patient != current[0]:
            dus = device_use_statement(device_id, patient, bed, datetime.now(UTC))

            async def job(tx: WriteTx) -> None:
                tx.put("DeviceUseStatement", dus["id"], dus, method="PUT")

            await self.store.write(job)
            log.info("device %s associated with a patient through bed %s (unconfirmed)", device_id, bed)
        return Association(patient, False)

    async def _patient_at(self, bed: str) -> str | None:
        req = FhirRequest("GET", "Encounter", (("location", f"Location/{bed}"), ("status", "in-progress"),
                                               ("_sort", "-_lastUpdated"), ("_count", "1")))
        resp = await handle(req, self.ctx)
        if resp.status != 200 or resp.body is None:
            log.warning("bed %s: encounter search failed with status %d", bed, resp.status)
            return None
        # entries hold stored JSON as orjson fragments: one dump/load gives plain dicts
        bundle = loads(orjson.dumps(resp.body) if isinstance(resp.body, dict) else resp.body)
        for entry in bundle.get("entry", ()):
            subject = (entry.get("resource", {}).get("subject") or {}).get("reference")
            if subject:
                return str(subject)
        return None
