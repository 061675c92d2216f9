"""The alerting engine as a change-log consumer with its own durable cursor.

Loop: read the change log past the cursor with the bodies (Observations and DetectedIssues only;
one statement on a kept connection, ``tail``), hand vital-sign Observations to ``inference.Engine``
and every DetectedIssue version back to ``Engine.apply_stored`` (so acknowledge / resolve /
mark-false done through the REST API reach the tracker), then write the engine's effects *and*
the cursor advance in one ``Store.write`` transaction.  A crash before that commit replays the
same changes, and the engine's ids are deterministic (episode UUID-5, score and risk UUID-5), so a
restart neither loses nor duplicates an alert.  Batches without effects move the cursor in memory
and persist it at most once a second.

Latency: the entries a commit of this process just wrote come from the store's notifier in memory
(``ChangeReader.recent``), not read back.  An alert goes to the writer as soon as its chunk is
evaluated (or, while the consumer's previous commit is in flight, the moment that one is durable),
with everything evaluated before it, as an urgent write (``Store.write(urgent=True)``: a small
group right after the commit in progress, never behind queued ingest).  Other effects (scores,
risk assessments) are held up to ``effects_every_s`` (50 ms) and then written the same way, so the
consumer adds one small transaction per period, not one per ingest commit.

It never blocks ingest: it is its own task, woken by the store's in-process notifier after each
commit, and it evaluates a batch in chunks of ``chunk`` values, yielding to the event loop between
them (about 3 ms each).  A worker thread would only move the same pure-Python work under the
GIL; chunks keep each hold of the loop short and need no locking.  The ONNX model (about 50 µs a
call, at most every 10 s per patient, one intra-op thread) is cheap enough to stay on the loop.

Before writing a DetectedIssue it reads the stored one inside the writer transaction, so a
clinician's action that committed meanwhile is kept (``inference.merge_people``) and an alert a
clinician closed is never reopened.  A new episode's first version (an id neither stored, restored
nor seen in the log) is written without that read, ``if_absent``: the flush checks that nothing is
stored, in the same thread hop as the commit; if something is (a replay after a crash), the write
is skipped and goes again the merging way.

What the engine reads (``is_engine_input``): Observations with category ``vital-signs``, plus the
clinician-entered ACVPU (LOINC 67775-7) and oxygen-therapy (3151-8) Observations.  Waveforms,
device settings, device alerts and the engine's own NEWS2 scores (category ``survey``) are not.
Device-status Observations (connection state, clock drift) become technical conditions
(``device_status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from fhir_server.core.crud import read_version
from fhir_server.core.search_exec import match_ids
from fhir_server.storage import Change, PendingWrite, Store, WriteTx, loads
from inference import (
    ALERT_IDENTIFIER_SYSTEM,
    AlertState,
    Engine,
    alert_from_detected_issue,
    is_json_object,
    merge_people,
    sample_from_observation,
)
from inference.fhir import detected_issue

from .device_status import device_status
from .models import ModelSource
from .tail import Body, ChangeReader
from .units import UnitRulesets

log = logging.getLogger(__name__)

CONSUMER = "inference-alerting"
TYPES = ("Observation", "DetectedIssue")
VITAL_SIGNS = "vital-signs"
_CLINICIAN_CODES = frozenset({"67775-7", "3151-8"})  # ACVPU, oxygen flow: entered, not monitored
# (seq, "obs", dict), (seq, "status", (DeviceStatus, conditions)) or (seq, "issue", AlertState)
Item = tuple[int, str, Any]


_READ_TYPES = frozenset({"Observation", "DetectedIssue"})
_SAMPLED_DATA = b'"valueSampledData"'


def _has_category(obs: Mapping[str, Any], code: str) -> bool:
    for cat in obs.get("category") or ():
        codings = cat.get("coding") if is_json_object(cat) else None
        for coding in codings if isinstance(codings, list) else ():
            if is_json_object(coding) and coding.get("code") == code:
                return True
    return False


def is_engine_input(obs: Mapping[str, Any]) -> bool:
    """A vital-sign Observation the engine evaluates (never a waveform, never its own output)."""
    if obs.get("resourceType") != "Observation" or "valueSampledData" in obs:
        return False
    if _has_category(obs, VITAL_SIGNS):
        return True
    codings = (obs.get("code") or {}).get("coding") or ()
    return any(isinstance(c, Mapping) and c.get("code") in _CLINICIAN_CODES for c in codings)


def _is_ours(issue: Mapping[str, Any]) -> bool:
    return any(isinstance(i, Mapping) and i.get("system") == ALERT_IDENTIFIER_SYSTEM
               for i in issue.get("identifier") or ())


@dataclass
class ConsumerStats:
    changes: int = 0
    observations: int = 0
    written: int = 0
    alerts_written: int = 0
    batches: int = 0
    errors: int = 0
    model: str | None = None
    last_batch_ms: float = 0.0
    cursor: int = 0
    caught_up: int = 0
    warmed: dict[str, int] = field(default_factory=dict)


class AlertingConsumer:
    """``await start()``, then it runs until ``await stop()``; ``stats`` for tests and metrics."""

    def __init__(self, store: Store, engine: Engine, *, name: str = CONSUMER, batch: int = 2000,
                 models: ModelSource | None = None, chunk: int = 32, cursor_every_s: float = 1.0,
                 warm_changes: int = 100_000, restore_days: float = 1.0, idle_s: float = 1.0,
                 units: UnitRulesets | None = None, effects_every_s: float = 0.05):
        self.store, self.engine, self.name = store, engine, name
        self.batch, self.models, self.chunk = batch, models, chunk
        self.cursor_every_s, self.warm_changes, self.restore_days = cursor_every_s, warm_changes, restore_days
        self.idle_s, self.units, self.effects_every_s = idle_s, units, effects_every_s
        self.stats = ConsumerStats()
        self._seen = 0  # everything up to here is processed; the durable cursor may lag
        self._durable = 0
        self._durable_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._unwritten: tuple[list[dict[str, Any]], int] | None = None
        self._inflight: asyncio.Task[None] | None = None  # the commit of ``_unwritten``, not awaited yet
        self._fx: list[dict[str, Any]] = []  # effects evaluated, not yet committed (see ``_hold``)
        self._fx_upto = 0
        self._fx_since = 0.0
        self._alert_held = False
        self._model_polled = 0.0
        self._wait_after = 0
        self._poll = True  # the next read goes to the database (start-up, idle polls)
        self._issues: set[str] = set()  # DetectedIssue ids stored or seen in the log: written after a read
        self.reader = ChangeReader(store, TYPES)

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._seen = self._durable = self.stats.cursor = await self.store.cursor(self.name)
        if self.models is not None:
            model = await asyncio.to_thread(self.models.initial)
            if model is not None:
                self.engine.model.swap(model)
        self.stats.model = self._model_label()
        await self._warm_windows()
        await self._restore_alerts()
        self._task = asyncio.create_task(self._run(), name="vitalgate-alerting")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.reader.close()
        with contextlib.suppress(Exception):  # a failed one is written again by a restart's replay
            await self._settle()
        if self._fx:
            with contextlib.suppress(Exception):  # else a restart evaluates these entries again
                await self._flush()
                await self._settle()
        if self._seen > self._durable and not self._fx and self._unwritten is None:
            with contextlib.suppress(Exception):  # the store may already be closing
                await self.store.advance_cursor(self.name, self._seen)

    async def _run(self) -> None:
        while True:
            try:
                progressed = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup: retry the same batch, never die
                self.stats.errors += 1
                log.exception("alerting batch after seq %d failed; retrying", self._seen)
                await asyncio.sleep(0.5)
                continue
            if not progressed:
                # a commit's entries are then in memory; after a quiet ``idle_s`` read the database
                # too (entries another process wrote wake nobody here)
                self._poll = await self.store.wait_for_change(self._wait_after, self.idle_s) <= self._wait_after

    # -- one batch --------------------------------------------------------------------------
    async def step(self) -> bool:
        """Process the next batch; False when there was nothing new."""
        if self._inflight is not None and self._inflight.done():
            await self._settle()  # a failed commit raises here: ``_run`` retries this step
        if self._unwritten is not None and self._inflight is None:
            # the last commit failed after the engine had moved on: write the same effects again
            # rather than re-evaluating (a re-run would not emit an Open the tracker already made)
            unwritten, unwritten_upto = self._unwritten
            await self._commit(unwritten, unwritten_upto)
            self._unwritten = None
            self._seen = self.stats.cursor = max(self._seen, unwritten_upto)
            return True
        self._poll_model()
        # Wake-ups after this: other types' commits (and our own writes) must not spin the loop, but
        # the cursor only ever moves to entries actually read, so nothing is skipped on a late read.
        self._wait_after = max(self._seen, self.store.notifier.seq)
        poll, self._poll = self._poll, False
        held = None if poll else self.reader.recent(self._seen, self.batch)
        bodies: Mapping[int, Body]
        if held is not None:  # just committed in this process: straight from memory
            changes, bodies, upto = held
        else:
            changes, bodies = await self.reader.read(self._seen, self.batch)
            upto = changes[-1].seq if changes else self._seen
        if not changes:
            if self._fx and not self._committing():  # quiet: what is held back goes now
                await self._flush()
                return True
            if upto > self._seen:  # only other types' entries: move past them
                self._seen = self.stats.cursor = upto
                await self._maybe_persist_cursor()
                return True
            self.stats.caught_up = self._wait_after  # nothing for us up to the head seen before the read
            await self._maybe_persist_cursor()
            return False
        started = time.perf_counter()
        items = await self._items(changes, bodies)
        for i in range(0, len(items), self.chunk):
            if i:
                await asyncio.sleep(0)  # let ingest run between chunks: the loop is never held long
            chunk = items[i:i + self.chunk]
            self._hold(self._evaluate(chunk), chunk[-1][0])
            if self._alert_held:  # an alert goes to the writer at once, before the rest of the batch
                await self._flush()
        self._hold([], upto)
        self._seen = upto
        self.stats.changes += len(changes)
        self.stats.batches += 1
        self.stats.cursor = upto
        self.stats.last_batch_ms = (time.perf_counter() - started) * 1000
        if self._fx and time.monotonic() - self._fx_since >= self.effects_every_s:
            await self._flush()
        elif not self._fx:
            await self._maybe_persist_cursor()
        return True

    def _hold(self, resources: list[dict[str, Any]], upto: int) -> None:
        """Effects of the entries up to ``upto``: committed with that cursor by the next ``_flush``.

        Scores and risk assessments wait up to ``effects_every_s`` so that the consumer writes
        one transaction per period instead of one per ingest commit; an alert never waits."""
        if resources:
            if not self._fx:
                self._fx_since = time.monotonic()
            self._fx += resources
            self._alert_held = self._alert_held or any(r["resourceType"] == "DetectedIssue" for r in resources)
        if self._fx:
            self._fx_upto = max(self._fx_upto, upto)

    def _committing(self) -> bool:
        return self._inflight is not None and not self._inflight.done()

    async def _flush(self) -> None:
        """Hand what is held to the writer and go on evaluating while it commits.

        One commit in flight at a time (the cursor advances in order); what is held meanwhile goes
        in the next one, as soon as that one is durable (``_drain``).  Awaiting a commit per
        alert serialised alerts behind the writer: an urgent write still waits for the ingest
        group in progress (about 250 ms at 5,000 Obs/s offered), so a burst of alerts queued up
        one group each and the last came 15 s late."""
        if self._committing():
            return  # the commit in flight takes what is held when it is done
        await self._settle()
        self._inflight = asyncio.create_task(self._drain(), name="vitalgate-alerting-commit")

    async def _drain(self) -> None:
        while self._fx:  # what is held, then what was held while that committed
            fx, upto = self._fx, self._fx_upto
            self._fx, self._alert_held = [], False
            self._unwritten = (fx, upto)  # on failure, ``step`` writes exactly these again first
            await self._commit(fx, upto)
            self._unwritten = None

    async def _settle(self) -> None:
        """Wait for the commit in flight; on failure it stays ``_unwritten`` and this raises."""
        task, self._inflight = self._inflight, None
        if task is not None:
            await task

    async def _items(self, changes: Sequence[Change], bodies: Mapping[int, Body]) -> list[Item]:
        """One item per input the engine takes, in log order."""
        items: list[Item] = []
        for change in changes:
            if change.type not in _READ_TYPES:
                continue
            body = bodies.get(change.vid)
            if not body:
                continue
            if isinstance(body, dict):  # from memory: the Observation as written (live: not a deletion)
                if "valueSampledData" in body:  # a waveform segment: never engine input
                    continue
                resource = body
            else:
                if change.type == "Observation" and _SAMPLED_DATA in body:
                    # Waveform segments are most of the bytes and never engine input: not parsed at
                    # all. An escaped quote in text reads \"valueSampledData\": a note cannot match.
                    continue
                try:
                    resource = orjson.loads(body)  # floats are fine for the engine; 20x faster than Decimal
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(resource, dict) or resource.get("meta", {}).get("deleted"):
                    continue
            if change.type == "Observation" and is_engine_input(resource):
                if self.units is not None:
                    await self.units.observe(resource)
                items.append((change.seq, "obs", resource))
            elif change.type == "Observation" and (status := device_status(resource)) is not None:
                items.append((change.seq, "status", status))
            elif change.type == "DetectedIssue" and _is_ours(resource):
                self._issues.add(change.id)
                with contextlib.suppress(ValueError):
                    items.append((change.seq, "issue", alert_from_detected_issue(resource)))
        return items

    def _evaluate(self, items: Sequence[Item]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _seq, kind, value in items:
            try:
                if kind == "issue":
                    self.engine.apply_stored(value)
                elif kind == "status":
                    out.extend(self.engine.on_device_status(*value).resources)
                else:
                    self.stats.observations += 1
                    out.extend(self.engine.on_observation(value).resources)
            except Exception:  # one bad input must not stop alerting for every other patient
                self.stats.errors += 1
                log.exception("alerting could not evaluate a %s input", kind)
        return out

    async def _commit(self, resources: list[dict[str, Any]], upto: int) -> None:
        async def job(tx: WriteTx) -> tuple[list[AlertState], list[tuple[int, PendingWrite]]]:
            closed: list[AlertState] = []
            fresh: list[tuple[int, PendingWrite]] = []
            for i, resource in enumerate(resources):
                if resource["resourceType"] == "DetectedIssue":
                    if resource["id"] not in self._issues:
                        # a new episode has nothing stored to merge with: no read (a thread hop that
                        # waits its turn on the loop, 1-8 ms under load); the flush checks it is absent
                        self._issues.add(resource["id"])
                        fresh.append((i, tx.put("DetectedIssue", resource["id"], resource, if_absent=True)))
                        continue
                    kept = await _keep_people(tx, resource, closed)
                    if kept is None:
                        continue
                    resource = kept
                tx.put(resource["resourceType"], resource["id"], resource, method="PUT")
            tx.advance_cursor(self.name, upto)
            return closed, fresh

        # ahead of queued ingest (a small group of its own right after the commit in progress): it
        # carries the alerts, and the consumer waits for it
        closed, fresh = await self.store.write(job, urgent=True)
        self._durable, self._durable_at = upto, time.monotonic()
        for state in closed:  # a clinician closed it meanwhile: the engine stops updating it
            self.engine.apply_stored(state)
        skipped = [i for i, w in fresh if w.skipped]
        self.stats.written += len(resources) - len(skipped)
        self.stats.alerts_written += sum(r["resourceType"] == "DetectedIssue" for r in resources) - len(skipped)
        # It was stored after all (a replay after a crash): the engine's version goes again, merged with
        # what people did to it, unless a later version in this batch already went that way.
        last = {r["id"]: i for i, r in enumerate(resources)}
        stored = [resources[i] for i in skipped if last[resources[i]["id"]] == i]
        if stored:
            await self._commit(stored, upto)

    async def _maybe_persist_cursor(self) -> None:
        if (self._fx or self._inflight is not None or self._seen <= self._durable
                or time.monotonic() - self._durable_at < self.cursor_every_s):
            return
        await self.store.advance_cursor(self.name, self._seen)
        self._durable, self._durable_at = self._seen, time.monotonic()

    def _poll_model(self) -> None:
        # at most once a second: a stat() per batch would cost more than the batch when batches are
        # one ingest commit each (and every blocking call hands the GIL to the writer's thread)
        if self.models is None or time.monotonic() - self._model_polled < 1.0:
            return
        self._model_polled = time.monotonic()
        model = self.models.poll()
        if model is not None:
            self.engine.model.swap(model)  # between batches: no event is dropped or half-scored
            self.stats.model = self._model_label()

    def _model_label(self) -> str | None:
        model = self.engine.model.current
        return None if model is None else f"{model.name} {model.version}"

    # -- after a restart ------------------------------------------------------------------------
    async def _warm_windows(self) -> None:
        """Refill the windows from the Observations just before the cursor (nothing is raised)."""
        after, count = max(0, self._seen - self.warm_changes), 0
        while after < self._seen:
            changes = [c for c in await self.store.changes(after, limit=5000, types=("Observation",))
                       if c.seq <= self._seen]
            if not changes:
                break
            bodies = await self.store.bodies([c.vid for c in changes])
            for change in changes:
                body = bodies.get(change.vid)
                resource = loads(body) if body else None
                if isinstance(resource, dict) and is_engine_input(resource):
                    self.engine.warm(sample_from_observation(resource))
                    count += 1
            after = changes[-1].seq
        self.stats.warmed["observations"] = count

    async def _restore_alerts(self) -> None:
        """Re-enter the latest episode of each patient and condition touched recently."""
        since = datetime.now(UTC) - timedelta(days=self.restore_days)
        ids = await match_ids(self.store, "DetectedIssue", f"_lastUpdated=ge{since.isoformat()}", limit=100_000)
        latest: dict[tuple[str, str], AlertState] = {}
        for id_ in ids:
            stored = await self.store.read("DetectedIssue", id_)
            if stored is None or stored.deleted:
                continue
            resource = loads(stored.body)
            if not _is_ours(resource):
                continue
            try:
                state = alert_from_detected_issue(resource)
            except ValueError:
                continue
            self._issues.add(id_)
            key = (state.patient_id, state.condition)
            if key not in latest or latest[key].started < state.started:
                latest[key] = state
        for state in latest.values():
            self.engine.restore_alert(state)
        self.stats.warmed["alerts"] = len(latest)


async def _keep_people(tx: WriteTx, resource: dict[str, Any], closed: list[AlertState]) -> dict[str, Any] | None:
    """The engine's DetectedIssue version with what clinicians did to the stored one; None to skip."""
    stored = await read_version(tx, "DetectedIssue", resource["id"])
    if stored is None or stored.deleted:
        return resource
    try:
        stored_state = alert_from_detected_issue(loads(stored.body))
    except ValueError:  # edited over REST beyond our shape: leave it, never block the batch
        log.warning("DetectedIssue/%s was changed outside the alert shape; the engine leaves it", resource["id"])
        return None
    engine_state = alert_from_detected_issue(resource)
    merged = merge_people(engine_state, stored_state)
    if merged is None:
        closed.append(stored_state)
        return None
    return resource if merged is engine_state else detected_issue(merged)
