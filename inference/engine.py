"""The engine core without a database: samples in, FHIR resources to write out.

This is the seam the change-log consumer wires up.  For each new vital-sign Observation it calls
``Engine.on_observation`` (or ``on_sample``) and writes the returned resources through the storage
API in the same transaction as its cursor.  Device-status changes go to ``on_device_status``; the
REST API's acknowledge / resolve / false-alarm operations act on the stored DetectedIssue and the
consumer hands every stored version back through ``apply_stored`` (``acknowledge`` and
``mark_false_alarm`` remain for callers without a database).  After a
restart, ``warm`` refills the windows from stored Observations without raising anything.

Per sample: the patient's window is updated, the rule set chosen for the patient (``assign``) is
evaluated (NEWS2 or limits), each condition goes through the alarm tracker, and alert actions
become DetectedIssue versions.  The NEWS2 score Observation and the model's RiskAssessment are
written on change or at an interval, never on every value.  A risk above ``risk_threshold`` is
an advisory (low severity) ``model-deterioration`` condition, held while the risk stays above
``risk_clear_threshold``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from inference.alarms import AlarmPolicy, AlarmTracker, AlertKey, Evaluation, Level, Open
from inference.alert import (
    AlertState,
    acknowledge,
    advance,
    mark_false_alarm,
    model_device_id,
    open_alert,
    ruleset_device_id,
)
from inference.features import features_from_window
from inference.fhir import detected_issue, news2_observation, risk_assessment
from inference.registry import ModelHandle
from inference.rules import (
    ConditionResult,
    evaluate_concordant,
    evaluate_deviations,
    evaluate_limits,
    evaluate_news2,
)
from inference.ruleset import RuleSet
from inference.technical import DeviceStatus, evaluate_technical
from inference.throttle import ChangeThrottle
from inference.vitals import Param, VitalSample, sample_from_observation
from inference.window import WindowStore

__all__ = ["DEFAULT_RISK_POLICY", "MODEL_CONDITION", "Effects", "Engine"]

MODEL_CONDITION = "model-deterioration"
_MODEL_PARAMS = frozenset({Param.HEART_RATE, Param.RESP_RATE, Param.SPO2, Param.SYSTOLIC_BP,
                           Param.TEMPERATURE, Param.FIO2})


@dataclass(slots=True)
class Effects:
    """FHIR resources (dicts) to write, in order, for one input."""

    resources: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: Effects) -> None:
        self.resources.extend(other.resources)


_ZERO = timedelta(0)
DEFAULT_RISK_POLICY = AlarmPolicy(persistence_s=120, clear_s=600, update_interval_s=900)
_CLOSED_BY_PEOPLE = frozenset({"resolved", "false-alarm"})
CLOSED_KEPT = 4096  # closed alerts kept in memory so a late false-alarm mark still finds them


class Engine:
    def __init__(
        self,
        default_ruleset: RuleSet,
        model: ModelHandle | None = None,
        *,
        score_interval: timedelta = timedelta(minutes=15),
        risk_interval: timedelta = timedelta(minutes=15),
        risk_threshold: float = 0.8,
        risk_clear_threshold: float = 0.6,
        risk_policy: AlarmPolicy = DEFAULT_RISK_POLICY,
        risk_every: timedelta = timedelta(seconds=10),
    ):
        self.default_ruleset = default_ruleset
        self.model = model or ModelHandle()
        self.windows = WindowStore()
        self.tracker = AlarmTracker()
        self.alerts: dict[str, AlertState] = {}  # open alerts, by episode id
        self._closed: OrderedDict[str, AlertState] = OrderedDict()
        self._assigned: dict[str, RuleSet] = {}
        self._score_throttle = ChangeThrottle(score_interval)
        self._risk_throttle = ChangeThrottle(risk_interval)
        self.risk_threshold = risk_threshold
        # hysteresis: a risk between the two keeps a pending or open advisory going (scores every
        # 10 s wobble around 0.8; one at 0.79 restarted the 2-minute window) but never opens one
        self.risk_clear_threshold = min(risk_clear_threshold, risk_threshold)
        self.risk_policy = risk_policy
        # The model looks at 15-minute trends and its alert needs 2 minutes of persistence: scoring
        # every 10 s per patient loses nothing and keeps the model off the per-value hot path.
        self.risk_every = risk_every
        self._risk_last: dict[str, datetime] = {}

    def assign(self, patient_id: str, ruleset: RuleSet) -> None:
        """Choose the rule set for a patient (from the care unit), replacing the default."""
        self._assigned[patient_id] = ruleset

    def unassign(self, patient_id: str) -> None:
        """Back to the default rule set (the patient left a unit with its own)."""
        self._assigned.pop(patient_id, None)

    def ruleset_for(self, patient_id: str) -> RuleSet:
        return self._assigned.get(patient_id, self.default_ruleset)

    def warm(self, samples: Iterable[VitalSample]) -> None:
        """Refill windows after a restart; nothing is evaluated or emitted."""
        for sample in samples:
            self.windows.add(sample)

    def restore_alert(self, state: AlertState) -> None:
        """After a restart: re-enter a stored alert (see ``fhir.alert_from_detected_issue``).

        Give only the latest episode of each patient and condition.  An open one is continued; one
        a clinician closed (resolved or false) holds its condition silent until it clears, as before
        the restart; one the engine resolved by itself leaves the condition idle.
        """
        key = AlertKey(state.patient_id, state.condition)
        if state.status == "preliminary":
            self.alerts[state.episode_id] = state
            self.tracker.restore(key, state.episode_id, state.level, state.updated or state.started)
            return
        self._keep(state)
        if any(m.action in _CLOSED_BY_PEOPLE for m in state.mitigations):
            self.tracker.restore(key, state.episode_id, state.level, state.ended or state.started,
                                 suppressed=True)

    def on_observation(self, obs: Mapping[str, object]) -> Effects:
        effects = Effects()
        for sample in sample_from_observation(obs):
            self._on_sample(sample, effects.resources)
        return effects

    def on_sample(self, sample: VitalSample) -> Effects:
        effects = Effects()
        self._on_sample(sample, effects.resources)
        return effects

    def _on_sample(self, sample: VitalSample, out: list[dict[str, Any]]) -> None:
        window = self.windows.add(sample)
        ruleset = self.ruleset_for(sample.patient_id)
        author = ruleset_device_id(ruleset.name, ruleset.version)
        if ruleset.kind == "news2":
            result, condition = evaluate_news2(ruleset, window, sample.patient_id, sample.time)
            if result.complete and self._score_throttle.due(
                sample.patient_id, (result.total, result.band), sample.time
            ):
                out.append(news2_observation(result, sample.patient_id, sample.time, author))
            conditions = [condition]
        else:
            patient, tracker = sample.patient_id, self.tracker
            conditions = evaluate_limits(ruleset, window, patient, sample.time, sample.param,
                                         lambda condition: tracker.idle(AlertKey(patient, condition)))
        if ruleset.deviation:
            conditions += evaluate_deviations(ruleset, window, sample.time, sample.param)
        if ruleset.concordant:
            conditions += evaluate_concordant(ruleset, window, sample.time, sample.param)
        for result_ in conditions:
            self._track(sample.patient_id, result_, author, out)
        if sample.param in _MODEL_PARAMS:
            self._score_risk(sample.patient_id, sample.time, out)

    def on_device_status(self, status: DeviceStatus, only: frozenset[str] | None = None) -> Effects:
        """Technical conditions from a device's status; ``only`` limits them to what the report is
        about (a clock report says nothing about the connection)."""
        ruleset = self.ruleset_for(status.patient_id)
        author = ruleset_device_id(ruleset.name, ruleset.version)
        effects = Effects()
        for result in evaluate_technical(ruleset.technical, status):
            if only is None or result.condition in only:
                self._track(status.patient_id, result, author, effects.resources)
        return effects

    def acknowledge(self, episode_id: str, who: str, when: datetime) -> dict[str, Any]:
        """Record a nurse's acknowledgement; the DetectedIssue version to store."""
        state = acknowledge(self._alert(episode_id), who, when)
        self._keep(state)
        return detected_issue(state)

    def mark_false_alarm(self, episode_id: str, who: str, when: datetime) -> dict[str, Any]:
        """Withdraw an alert as false (``entered-in-error``); the condition is held off until clear."""
        state = self._alert(episode_id)
        if state.status == "preliminary":
            self.tracker.dismiss(AlertKey(state.patient_id, state.condition))
        state = mark_false_alarm(state, who, when)
        self._keep(state)
        return detected_issue(state)

    def apply_stored(self, stored: AlertState) -> None:
        """Learn what people did to a stored alert (acknowledged, resolved, marked false).

        The change-log consumer calls this for every DetectedIssue version it sees, its own
        included, so it must be idempotent and must never move the engine's level backwards:
        only mitigations and a closing status are taken from storage.  An alert closed by a
        clinician is never updated again; its condition is held silent until it clears, after
        which a new episode may open.
        """
        known = self.alerts.get(stored.episode_id) or self._closed.get(stored.episode_id)
        if known is None:
            if stored.status != "preliminary":
                self._keep(stored)  # so a late false-alarm mark still finds it
            return
        people = tuple(m for m in stored.mitigations if m not in known.mitigations)
        if people:
            known = replace(known, mitigations=tuple(sorted((*known.mitigations, *people),
                                                            key=lambda m: m.date)))
        if stored.status != "preliminary" and known.status != stored.status:
            key = AlertKey(known.patient_id, known.condition)
            if known.status == "preliminary" and self.tracker.open_episode(key) == known.episode_id:
                self.tracker.dismiss(key)
            known = replace(known, status=stored.status, ended=stored.ended or known.ended)
        self._keep(known)

    def _alert(self, episode_id: str) -> AlertState:
        state = self.alerts.get(episode_id) or self._closed.get(episode_id)
        if state is None:
            raise KeyError(f"no alert with episode {episode_id}")
        return state

    def _keep(self, state: AlertState) -> None:
        if state.status == "preliminary":
            self.alerts[state.episode_id] = state
            return
        self.alerts.pop(state.episode_id, None)
        self._closed[state.episode_id] = state
        self._closed.move_to_end(state.episode_id)
        while len(self._closed) > CLOSED_KEPT:
            self._closed.popitem(last=False)

    def _track(self, patient_id: str, result: ConditionResult, author: str, out: list[dict[str, Any]]) -> None:
        key = AlertKey(patient_id, result.condition)
        for action in self.tracker.step(key, result.evaluation, result.policy):
            if isinstance(action, Open):
                state = open_alert(action, author)
            else:
                state = advance(self.alerts[action.episode_id], action)
            self._keep(state)
            out.append(detected_issue(state))

    def _score_risk(self, patient_id: str, at: datetime, out: list[dict[str, Any]]) -> None:
        model = self.model.current  # one reference per evaluation: a hot swap cannot cut it short
        window = self.windows.get(patient_id)
        if model is None or window is None:
            return
        last = self._risk_last.get(patient_id)
        if last is not None and _ZERO <= at - last < self.risk_every:
            return
        vector = features_from_window(window, at)
        if len(vector.imputed) > len(vector.values) // 2:
            return  # too little data to say anything
        self._risk_last[patient_id] = at
        probability = model.predict(vector.values)
        performer = model_device_id(model.name, model.version)
        if self._risk_throttle.due(patient_id, round(probability, 2), at):
            out.append(risk_assessment(
                patient_id=patient_id, at=at, probability=probability, model_name=model.name,
                model_version=model.version, basis_ids=vector.observation_ids,
                performer_device_id=performer))
        level = Level.LOW if probability >= self.risk_threshold else Level.NONE
        hold = Level.LOW if probability >= self.risk_clear_threshold else Level.NONE
        evaluation = Evaluation(at, level, vector.observation_ids, hold)
        self._track(patient_id, ConditionResult(MODEL_CONDITION, evaluation, self.risk_policy), performer, out)
