"""Alarm-fatigue state machine: one open alert per (patient, condition), pure and deterministic.

Input: for one key, a stream of ``Evaluation(time, level, hold_level, observation_ids)``, where
``level`` is the condition's level by its *set* thresholds and ``hold_level`` by its *clear*
thresholds (hysteresis: a value between the two keeps an open alert open but never opens one).
Output: a list of actions, each carrying the episode id and the triggering observation ids.

States and transitions (times are the evaluations' times; nothing here reads the clock)::

    IDLE ──level>0──▶ PENDING ──still >0 after persistence──▶ OPEN  (emits Open)
    PENDING ──level 0 and hold 0──▶ IDLE (nothing emitted: a transient never alerts)
    PENDING ──level 0, hold >0──▶ PENDING (hysteresis: hovering at the limit keeps the window)
    PENDING ──no evaluation for max_gap_s──▶ PENDING restarted (persistence must be continuous)
    OPEN ──effective level rises──▶ OPEN (Escalate, at once: deterioration is never delayed)
    OPEN ──effective level lower for deescalate_s──▶ OPEN (DeEscalate)
    OPEN ──same level, update_interval_s since last──▶ OPEN (Update with the new evidence)
    OPEN ──effective level 0 for clear_s──▶ IDLE (Resolve: auto-resolution after a stable clear)
    OPEN ──dismiss (false alarm)──▶ SUPPRESSED ──effective level 0──▶ IDLE

``effective = max(level, min(hold_level, open level))``.  An open alert's evidence is what opened it
plus the latest ``EVIDENCE_RECENT`` Observations since: every value of a long episode was kept
before (an ICU alert open 30 minutes carried 1,800 references, each Update re-sent them all and
each step scanned the list).  Episode ids are UUID-5 of patient,
condition and opening time, so replaying the same evaluations after a restart gives the same ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum

__all__ = [
    "Action",
    "AlarmPolicy",
    "AlarmTracker",
    "AlertKey",
    "DeEscalate",
    "Escalate",
    "Evaluation",
    "Level",
    "Open",
    "Resolve",
    "Update",
    "episode_id",
]

EVIDENCE_RECENT = 64
EPISODE_NAMESPACE = uuid.UUID("5b0e8f6e-2f4a-4c1e-9d59-7a1f0c3e6b21")


class Level(IntEnum):
    """Condition level; maps to DetectedIssue.severity low / moderate / high."""

    NONE = 0
    LOW = 1
    MODERATE = 2
    HIGH = 3


@dataclass(frozen=True, slots=True)
class AlertKey:
    patient_id: str
    condition: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One evaluated condition; ``hold_level`` defaults to ``level`` (no hysteresis)."""

    time: datetime
    level: Level
    observation_ids: tuple[str, ...] = ()
    hold_level: Level | None = None
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    """Timing of one condition, in seconds."""

    persistence_s: float = 0.0
    clear_s: float = 60.0
    deescalate_s: float = 60.0
    update_interval_s: float = 60.0
    max_gap_s: float = 60.0  # longer without an evaluation restarts the persistence window


@dataclass(frozen=True, slots=True)
class Action:
    key: AlertKey
    episode_id: str
    time: datetime
    level: Level
    observation_ids: tuple[str, ...]
    device_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Open(Action):
    started: datetime | None = None  # the start of the persistence window: the episode's start


@dataclass(frozen=True, slots=True)
class Update(Action):
    pass


@dataclass(frozen=True, slots=True)
class Escalate(Action):
    previous: Level = Level.NONE


@dataclass(frozen=True, slots=True)
class DeEscalate(Action):
    previous: Level = Level.NONE


@dataclass(frozen=True, slots=True)
class Resolve(Action):
    pass


def episode_id(key: AlertKey, opened: datetime) -> str:
    return str(uuid.uuid5(EPISODE_NAMESPACE, f"{key.patient_id}|{key.condition}|{opened.isoformat()}"))


@dataclass(slots=True)
class _Pending:
    since: datetime
    last: datetime
    evidence: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Open:
    episode: str
    level: Level
    last_emit: datetime
    evidence: list[str] = field(default_factory=list)  # what opened it
    devices: list[str] = field(default_factory=list)
    recent: dict[str, None] = field(default_factory=dict)  # the latest evidence since, oldest first
    clear_since: datetime | None = None
    lower_since: datetime | None = None
    suppressed: bool = False


def _collect(into: list[str], items: Sequence[str | None]) -> None:
    for item in items:
        if item is not None and item not in into:
            into.append(item)


def _collect_recent(state: _Open, items: Sequence[str]) -> None:
    for item in items:
        if item in state.recent or item in state.evidence:
            continue
        state.recent[item] = None
        if len(state.recent) > EVIDENCE_RECENT:
            del state.recent[next(iter(state.recent))]


class AlarmTracker:
    """Holds the state of every (patient, condition) and turns evaluations into actions."""

    def __init__(self) -> None:
        self._pending: dict[AlertKey, _Pending] = {}
        self._open: dict[AlertKey, _Open] = {}

    def idle(self, key: AlertKey) -> bool:
        """Nothing pending or open for ``key``: an evaluation at level NONE changes nothing."""
        return key not in self._open and key not in self._pending

    def open_episode(self, key: AlertKey) -> str | None:
        state = self._open.get(key)
        return None if state is None or state.suppressed else state.episode

    def step(self, key: AlertKey, ev: Evaluation, policy: AlarmPolicy) -> list[Action]:
        """Feed one evaluation; returns the actions it causes (often none)."""
        state = self._open.get(key)
        if state is not None:
            return self._step_open(key, state, ev, policy)
        return self._step_idle(key, ev, policy)

    def restore(self, key: AlertKey, episode: str, level: Level, time: datetime,
                suppressed: bool = False) -> None:
        """Re-enter an alert that was open before a restart, so it is continued, not duplicated."""
        self._pending.pop(key, None)
        self._open[key] = _Open(episode, level, time, suppressed=suppressed)

    def dismiss(self, key: AlertKey) -> str | None:
        """A false alarm: stop updating the episode and hold off until the condition clears.

        Returns the episode id so the caller can mark its DetectedIssue ``entered-in-error``.
        """
        state = self._open.get(key)
        if state is None or state.suppressed:
            return None
        state.suppressed = True
        return state.episode

    def _step_idle(self, key: AlertKey, ev: Evaluation, policy: AlarmPolicy) -> list[Action]:
        pending = self._pending.get(key)
        if ev.level <= Level.NONE:
            if pending is None:
                return []  # the common case, every quiet value of every condition: nothing to forget
            if (ev.hold_level is not None and ev.hold_level > Level.NONE
                    and _elapsed(pending.last, ev.time) <= policy.max_gap_s):
                # between the set and clear thresholds: a noisy value hovering at the limit keeps
                # the persistence window going (hysteresis) instead of restarting it on every
                # excursion; an alert still opens only on a value past the set threshold
                pending.last = ev.time
                return []
            del self._pending[key]
            return []
        if pending is None or _elapsed(pending.last, ev.time) > policy.max_gap_s:
            # a gap in the data breaks persistence: it must be seen continuously
            pending = self._pending[key] = _Pending(since=ev.time, last=ev.time)
        pending.last = ev.time
        _collect(pending.evidence, ev.observation_ids)
        _collect(pending.devices, (ev.device_id,))
        if (ev.time - pending.since).total_seconds() < policy.persistence_s:
            return []
        del self._pending[key]
        episode = episode_id(key, pending.since)
        self._open[key] = _Open(episode, ev.level, ev.time, list(pending.evidence),
                                list(pending.devices))
        return [Open(key, episode, ev.time, ev.level, tuple(pending.evidence),
                     tuple(pending.devices), started=pending.since)]

    def _step_open(
        self, key: AlertKey, state: _Open, ev: Evaluation, policy: AlarmPolicy
    ) -> list[Action]:
        hold = ev.level if ev.hold_level is None else max(ev.level, ev.hold_level)
        effective = Level(max(ev.level, min(hold, state.level)))
        if state.suppressed:
            if effective == Level.NONE:
                del self._open[key]
            return []
        if effective == Level.NONE:
            return self._clearing(key, state, ev, policy)
        state.clear_since = None
        _collect_recent(state, ev.observation_ids)
        _collect(state.devices, (ev.device_id,))
        if effective > state.level:
            previous = state.level
            episode, evidence, devices = self._mark(state, ev.time, effective)
            return [Escalate(key, episode, ev.time, effective, evidence, devices, previous=previous)]
        if effective < state.level:
            return self._lowering(key, state, ev, effective, policy)
        state.lower_since = None
        if _elapsed(state.last_emit, ev.time) >= policy.update_interval_s and ev.observation_ids:
            episode, evidence, devices = self._mark(state, ev.time, state.level)
            return [Update(key, episode, ev.time, state.level, evidence, devices)]
        return []

    def _clearing(
        self, key: AlertKey, state: _Open, ev: Evaluation, policy: AlarmPolicy
    ) -> list[Action]:
        if state.clear_since is None:
            state.clear_since = ev.time
        if _elapsed(state.clear_since, ev.time) < policy.clear_s:
            return []
        del self._open[key]
        return [Resolve(key, state.episode, ev.time, state.level, _evidence(state),
                        tuple(state.devices))]

    def _lowering(
        self, key: AlertKey, state: _Open, ev: Evaluation, effective: Level, policy: AlarmPolicy
    ) -> list[Action]:
        if state.lower_since is None:
            state.lower_since = ev.time
        if _elapsed(state.lower_since, ev.time) < policy.deescalate_s:
            return []
        previous = state.level
        episode, evidence, devices = self._mark(state, ev.time, effective)
        return [DeEscalate(key, episode, ev.time, effective, evidence, devices, previous=previous)]

    @staticmethod
    def _mark(state: _Open, time: datetime, level: Level) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """Record an emitted change; returns the episode, evidence and devices for the action."""
        state.level, state.last_emit, state.lower_since = level, time, None
        return state.episode, _evidence(state), tuple(state.devices)


def _evidence(state: _Open) -> tuple[str, ...]:
    return (*state.evidence, *state.recent)


def _elapsed(since: datetime, now: datetime) -> float:
    return (now - since) / timedelta(seconds=1)
