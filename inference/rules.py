"""Evaluate a rule set against a patient's window: conditions with levels, ready for the tracker.

Each evaluator returns ``ConditionResult`` values (condition code, ``Evaluation``, ``AlarmPolicy``)
that the caller feeds to ``AlarmTracker.step``.  Pure: the window and the time are arguments.

Missing data never clears an alarm: when a limit's parameter has no fresh sample, or a NEWS2
score is incomplete, the evaluation has ``level`` NONE (nothing new can open) and ``hold_level``
HIGH (an open alert stays at its level).  A feed that stops is reported by the technical
conditions instead (``inference.technical``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar, cast

from inference.alarms import AlarmPolicy, Evaluation, Level
from inference.news2 import DEFAULT_MAX_AGE, News2Config, News2Result, RiskBand, news2_from_window
from inference.ruleset import ChangeSpec, ConcordantRule, DeviationRule, LimitRule, RuleSet
from inference.vitals import Param
from inference.window import PatientWindow, Reading

__all__ = [
    "NEWS2_CONDITION",
    "SEVERITY_LEVEL",
    "ConditionResult",
    "band_level",
    "evaluate_concordant",
    "evaluate_deviations",
    "evaluate_limits",
    "evaluate_news2",
    "news2_config",
    "policy_for",
]

NEWS2_CONDITION = "news2"
SEVERITY_LEVEL = {"low": Level.LOW, "moderate": Level.MODERATE, "high": Level.HIGH}
_BAND_LEVEL = {
    RiskBand.LOW: Level.LOW,
    RiskBand.LOW_MEDIUM: Level.MODERATE,  # severity table: any single parameter = 3 -> moderate
    RiskBand.MEDIUM: Level.MODERATE,
    RiskBand.HIGH: Level.HIGH,
}
# crossed its set threshold, crossed its clear threshold, the sample measured
_Crossing = tuple[bool, bool, Reading]
_BAND_ORDER = [RiskBand.LOW, RiskBand.LOW_MEDIUM, RiskBand.MEDIUM, RiskBand.HIGH]


@dataclass(frozen=True, slots=True)
class ConditionResult:
    condition: str
    evaluation: Evaluation
    policy: AlarmPolicy


@dataclass(frozen=True, slots=True)
class _Resolved:
    """A limit or deviation rule with what each evaluation of it needs, worked out once."""

    rule: LimitRule | DeviationRule
    level: Level
    policy: AlarmPolicy
    max_age: timedelta


_V = TypeVar("_V")
# one condition: its rules from least to most severe, and the policy of the first one listed
_Group = tuple[str, tuple[_Resolved, ...], AlarmPolicy]


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a new value of one parameter makes a rule set evaluate: its conditions grouped, sorted
    and with their policies, built once per (rule set, patient with own limits, parameter).

    Building it on every value (grouping the rule set's rules, sorting each group by severity,
    a new ``AlarmPolicy`` per condition, a ``frozenset`` of each concordant rule's parameters)
    was a sizeable share of the engine's CPU per value."""

    limits: tuple[_Group, ...]
    deviations: tuple[_Group, ...]
    concordant: tuple[tuple[ConcordantRule, AlarmPolicy], ...]


class _DerivedOf(Generic[_V]):
    """Values worked out once from an immutable rule object (plus a key of their own), found by the
    object's identity: hashing a rule set would cost more than the work saved. The object is kept
    beside its value, so its id cannot be reused while the entry lives; all is dropped when full."""

    def __init__(self, kept: int = 4096) -> None:
        self._kept = kept
        self._values: dict[tuple[int, Hashable], tuple[object, _V]] = {}

    def get(self, owner: object, key: Hashable = None) -> _V | None:
        hit = self._values.get((id(owner), key))
        return hit[1] if hit is not None and hit[0] is owner else None

    def put(self, owner: object, key: Hashable, value: _V) -> _V:
        if len(self._values) >= self._kept:
            self._values.clear()
        self._values[(id(owner), key)] = (owner, value)
        return value


_PLANS: _DerivedOf[_Plan] = _DerivedOf()


def _plan(ruleset: RuleSet, patient_id: str | None, param: Param | None) -> _Plan:
    own = patient_id if patient_id is not None and patient_id in ruleset.patients else None
    plan = _PLANS.get(ruleset, (own, param))
    if plan is not None:
        return plan
    return _PLANS.put(ruleset, (own, param), _Plan(
        _groups(ruleset, ruleset.limits_for(own) if own is not None else ruleset.limit, param),
        _groups(ruleset, ruleset.deviation, param),
        tuple((rule, policy_for(ruleset, rule)) for rule in ruleset.concordant
              if param is None or param in rule.params)))


def _groups(ruleset: RuleSet, rules: Sequence[LimitRule | DeviationRule], param: Param | None
            ) -> tuple[_Group, ...]:
    groups: dict[str, list[LimitRule | DeviationRule]] = {}
    for rule in rules:
        if param is None or rule.param == param:
            groups.setdefault(rule.condition, []).append(rule)
    return tuple(
        (condition,
         tuple(_Resolved(r, SEVERITY_LEVEL[r.severity], policy_for(ruleset, r), timedelta(seconds=r.max_age_s))
               for r in sorted(listed, key=lambda r: SEVERITY_LEVEL[r.severity])),
         policy_for(ruleset, listed[0]))
        for condition, listed in groups.items())


def policy_for(ruleset: RuleSet, rule: LimitRule | DeviationRule | ConcordantRule | None = None) -> AlarmPolicy:
    d = ruleset.defaults
    return AlarmPolicy(
        persistence_s=d.persistence_s if rule is None or rule.persistence_s is None
        else rule.persistence_s,
        clear_s=d.clear_s if rule is None or rule.clear_s is None else rule.clear_s,
        deescalate_s=d.deescalate_s,
        update_interval_s=d.update_interval_s,
        max_gap_s=d.max_gap_s,
    )


def evaluate_limits(
    ruleset: RuleSet, window: PatientWindow, patient_id: str, at: datetime, param: Param | None = None,
    idle: Callable[[str], bool] | None = None,
) -> list[ConditionResult]:
    """One result per (param, direction) condition of the patient's limits (of ``param`` only, if given:
    a new heart rate cannot change a blood-pressure condition, so the hot path skips it).

    ``idle(condition)``: True when the caller's tracker holds nothing (pending or open) for the
    condition. Such a condition whose set threshold no rule crosses is left out: its result would
    be "nothing", which an idle tracker ignores (``AlarmTracker._step_idle``). That is almost every
    value of a stable patient, and the full hysteresis evaluation is the engine's largest cost."""
    out = []
    for group in _plan(ruleset, patient_id, param).limits:
        if idle is not None and not _sets(group, window, at) and idle(group[0]):
            continue
        out.append(_set_and_hold(group, window, at, _measure_limit))
    return out


def _sets(group: _Group, window: PatientWindow, at: datetime) -> bool:
    """Whether any rule of ``group`` has its set threshold crossed (``_measure_limit``'s first part)."""
    for r in group[1]:
        measured = _measure_limit(r, window, at)
        if measured is not None and measured[0]:
            return True
    return False


def _measure_limit(r: _Resolved, window: PatientWindow, at: datetime) -> _Crossing | None:
    rule = r.rule
    sample = window.latest(rule.param, at, r.max_age)
    if sample is None:
        return None
    if rule.direction == "low":
        return sample.value < rule.set, sample.value < rule.clear, sample
    return sample.value > rule.set, sample.value > rule.clear, sample


def _set_and_hold(
    group: _Group, window: PatientWindow, at: datetime,
    measure: Callable[[_Resolved, PatientWindow, datetime], _Crossing | None],
) -> ConditionResult:
    """Hysteresis over one condition's rules: ``measure(rule)`` says whether the rule's set and
    clear thresholds are crossed (and by which sample), or None without a fresh value.  The most
    severe crossed set threshold opens; the most severe crossed clear threshold holds an open
    alert; no fresh value at all holds it (a gap in the data never resolves an alert)."""
    condition, rules, first_policy = group
    set_rule: _Resolved | None = None
    hold_rule: _Resolved | None = None
    evidence: list[str] = []
    device: str | None = None
    seen = False
    for rule in rules:  # least severe first
        measured = measure(rule, window, at)
        if measured is None:
            continue
        seen = True
        crosses_set, crosses_clear, sample = measured
        if crosses_set:
            set_rule = rule
        if crosses_clear:
            hold_rule = rule
        if sample.observation_id not in evidence:
            evidence.append(sample.observation_id)
        device = device or sample.device_id
    level = Level.NONE if set_rule is None else set_rule.level
    hold = Level.HIGH if not seen else (Level.NONE if hold_rule is None else hold_rule.level)
    decided = set_rule or hold_rule
    policy = first_policy if decided is None else decided.policy
    return ConditionResult(condition, Evaluation(at, level, tuple(evidence), hold, device), policy)


def evaluate_deviations(
    ruleset: RuleSet, window: PatientWindow, at: datetime, param: Param | None = None
) -> list[ConditionResult]:
    """One result per (param, direction) change-from-baseline condition (of ``param`` only, if
    given).  No fresh value or no baseline yet: nothing opens and an open alert holds."""
    return [_set_and_hold(group, window, at, _measure_deviation)
            for group in _plan(ruleset, None, param).deviations]


def _measure_deviation(r: _Resolved, window: PatientWindow, at: datetime) -> _Crossing | None:
    rule = cast(DeviationRule, r.rule)
    measured = _change(rule, window, at, own=True)
    if measured is None:
        return None
    change, sample = measured
    return change >= rule.set, change > rule.clear, sample


def evaluate_concordant(
    ruleset: RuleSet, window: PatientWindow, at: datetime, param: Param | None = None
) -> list[ConditionResult]:
    """One result per concordant rule that involves ``param`` (every rule, if not given)."""
    out = []
    for rule, policy in _plan(ruleset, None, param).concordant:
        set_count = hold_count = 0.0
        graded = rule.score == "sum"
        seen = False
        evidence: list[str] = []
        device: str | None = None
        for spec in rule.change:
            measured = _change(spec, window, at, own=param is None or spec.param == param)
            if measured is None:
                continue
            seen = True
            change, sample = measured
            set_count += _credit(change, spec.set, graded, strict=False)
            held = _credit(change, spec.clear, graded, strict=True)
            hold_count += held
            if held > 0:
                if sample.observation_id not in evidence:
                    evidence.append(sample.observation_id)
                device = device or sample.device_id
        level = SEVERITY_LEVEL[rule.severity] if set_count >= rule.min_changes else Level.NONE
        hold = Level.HIGH if not seen else (
            SEVERITY_LEVEL[rule.severity] if hold_count >= rule.min_changes else Level.NONE)
        out.append(ConditionResult(rule.condition, Evaluation(at, level, tuple(evidence), hold, device), policy))
    return out


def _credit(change: float, threshold: float, graded: bool, strict: bool) -> float:
    """How much one change counts towards a concordant rule: 1 past its threshold (at it, unless
    ``strict``); otherwise nothing, or with ``graded`` the fraction of the threshold reached."""
    if change > threshold or (change == threshold and not strict):
        return 1.0
    if not graded or change <= 0 or threshold <= 0:
        return 0.0
    return change / threshold


def _change(spec: ChangeSpec, window: PatientWindow, at: datetime, own: bool
            ) -> tuple[float, Reading] | None:
    """The latest fresh value's change from the patient's baseline, or None (no value or baseline).

    Memoised per patient: the (sample, baseline) found for a parameter is reused by every rule
    at the same instant, and by a concordant rule evaluated on *another* parameter's sample
    (``own`` False) as long as that sample is still fresh, because each new sample of a parameter
    is evaluated on its own (``own`` True) and refreshes the entry.  A concordant rule therefore
    costs one lookup per new sample, not one per listed parameter.
    """
    key, max_age, lag, span = _spec_terms(spec)
    memo = window.memo.get(key)
    if memo is not None and (memo[0] == at or (not own and memo[0] <= at)):
        _, sample, baseline = memo
        if sample is None or baseline is None or (at - sample.time).total_seconds() > spec.max_age_s:
            return None
        return spec.change(sample.value, baseline), sample
    sample = window.latest(spec.param, at, max_age)
    baseline = None if sample is None else window.baseline(spec.param, at - lag, span, spec.min_baseline_samples)
    window.memo[key] = (at, sample, baseline)
    if sample is None or baseline is None:
        return None
    return spec.change(sample.value, baseline), sample


_SpecTerms = tuple[tuple[Param, float, float, int, float], timedelta, timedelta, timedelta]
_SPEC_TERMS: _DerivedOf[_SpecTerms] = _DerivedOf()


def _spec_terms(spec: ChangeSpec) -> _SpecTerms:
    """A change's memo key, maximum age, lag and baseline span, made once per rule, not per value."""
    terms = _SPEC_TERMS.get(spec)
    if terms is not None:
        return terms
    return _SPEC_TERMS.put(spec, None, (
        (spec.param, spec.lag_s, spec.baseline_s, spec.min_baseline_samples, spec.max_age_s),
        timedelta(seconds=spec.max_age_s), timedelta(seconds=spec.lag_s), timedelta(seconds=spec.baseline_s)))


def news2_config(ruleset: RuleSet) -> News2Config:
    settings = ruleset.news2
    if settings is None:
        return News2Config()
    ages = dict(DEFAULT_MAX_AGE)
    ages.update({k: timedelta(seconds=v) for k, v in settings.max_age_s.items()})
    return News2Config(max_age=ages, assume_air_when_unknown=settings.assume_air_when_unknown)


def band_level(band: RiskBand | None, min_alert_band: str) -> Level:
    if band is None or _BAND_ORDER.index(band) < _BAND_ORDER.index(RiskBand(min_alert_band)):
        return Level.NONE
    return _BAND_LEVEL[band]


def evaluate_news2(
    ruleset: RuleSet, window: PatientWindow, patient_id: str, at: datetime
) -> tuple[News2Result, ConditionResult]:
    """The NEWS2 score and its condition; an incomplete score holds, it never clears."""
    settings = ruleset.news2
    min_band = "low-medium" if settings is None else settings.min_alert_band
    result = news2_from_window(window, at, news2_config(ruleset), ruleset.spo2_scale_for(patient_id))
    level = band_level(result.band, min_band)
    hold = Level.HIGH if not result.complete else level
    evaluation = Evaluation(at, level, result.observation_ids, hold)
    return result, ConditionResult(NEWS2_CONDITION, evaluation, policy_for(ruleset))
