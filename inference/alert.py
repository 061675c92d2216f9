"""The alert record: the state of one DetectedIssue episode, and its pure transitions.

``AlertState`` is what ``inference.fhir.detected_issue`` renders.  It is built from the tracker's
``Open`` action and advanced by later actions (update, escalate, de-escalate, resolve) and by
people through the REST API (acknowledge, mark as a false alarm).  Every transition returns a new
frozen value; the caller stores the rendered resource.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from inference.alarms import Action, DeEscalate, Escalate, Level, Open, Resolve, Update

__all__ = [
    "AlertState",
    "Mitigation",
    "acknowledge",
    "advance",
    "mark_false_alarm",
    "merge_people",
    "model_device_id",
    "open_alert",
    "resolve",
    "ruleset_device_id",
]

Status = Literal["preliminary", "final", "entered-in-error"]


@dataclass(frozen=True, slots=True)
class Mitigation:
    """Who did what, when: ``action`` is ``acknowledged``, ``resolved`` or ``false-alarm``;
    ``author`` a reference (``Practitioner/1``); ``note`` free text from the clinician."""

    action: str
    date: datetime
    author: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class AlertState:
    episode_id: str
    patient_id: str
    condition: str
    level: Level
    started: datetime
    author_device_id: str
    observation_ids: tuple[str, ...] = ()
    device_ids: tuple[str, ...] = ()
    status: Status = "preliminary"
    ended: datetime | None = None
    mitigations: tuple[Mitigation, ...] = ()
    updated: datetime | None = None


def ruleset_device_id(name: str, version: str) -> str:
    """The Device standing for a rule set version as DetectedIssue.author."""
    return f"rules-{name}-{version}"


def model_device_id(name: str, version: str) -> str:
    """The Device standing for a model version as RiskAssessment.performer."""
    return f"model-{name}-{version}"


def open_alert(action: Open, author_device_id: str) -> AlertState:
    return AlertState(
        episode_id=action.episode_id,
        patient_id=action.key.patient_id,
        condition=action.key.condition,
        level=action.level,
        started=action.started or action.time,
        author_device_id=author_device_id,
        observation_ids=action.observation_ids,
        device_ids=action.device_ids,
        updated=action.time,
    )


def advance(state: AlertState, action: Action) -> AlertState:
    """Apply a later tracker action of the same episode."""
    if action.episode_id != state.episode_id:
        raise ValueError(f"action for episode {action.episode_id}, alert is {state.episode_id}")
    if state.status != "preliminary":
        return state  # closed or withdrawn alerts never change again
    changed = replace(state, observation_ids=action.observation_ids, device_ids=action.device_ids,
                      updated=action.time)
    if isinstance(action, Escalate | DeEscalate | Update):
        return replace(changed, level=action.level)
    if isinstance(action, Resolve):
        return replace(changed, status="final", ended=action.time)
    raise ValueError(f"cannot advance an alert with {type(action).__name__}")


def acknowledge(state: AlertState, who: str, when: datetime, note: str | None = None) -> AlertState:
    """A nurse acknowledged the alert: a ``mitigation`` entry, the episode stays open."""
    return replace(state, mitigations=(*state.mitigations, Mitigation("acknowledged", when, who, note)),
                   updated=when)


def resolve(state: AlertState, who: str, when: datetime, note: str | None = None) -> AlertState:
    """A clinician resolved the alert: ``final``, the period ends, a ``mitigation`` records who."""
    return replace(state, status="final", ended=state.ended or when, updated=when,
                   mitigations=(*state.mitigations, Mitigation("resolved", when, who, note)))


def mark_false_alarm(state: AlertState, who: str, when: datetime, note: str | None = None) -> AlertState:
    """A false alarm: ``entered-in-error``, closing the period, recording who said so."""
    return replace(state, status="entered-in-error", ended=state.ended or when, updated=when,
                   mitigations=(*state.mitigations, Mitigation("false-alarm", when, who, note)))


def merge_people(engine_state: AlertState, stored: AlertState) -> AlertState | None:
    """The engine's next version of an alert, keeping what people did to the stored one.

    People act on the stored DetectedIssue through the REST API while the engine works from
    memory; before the engine writes, its version takes the stored mitigations.  Returns None
    when people closed the alert (``final`` or ``entered-in-error``): the engine must not
    reopen or update it.
    """
    if stored.status != "preliminary":
        return None
    extra = tuple(m for m in stored.mitigations if m not in engine_state.mitigations)
    if not extra:
        return engine_state
    merged = tuple(sorted((*engine_state.mitigations, *extra), key=lambda m: m.date))
    return replace(engine_state, mitigations=merged)
