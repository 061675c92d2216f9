"""Alarm state machine: persistence, hysteresis, one alert per condition, escalation, resolution."""

from datetime import UTC, datetime, timedelta

from inference.alarms import (
    AlarmPolicy,
    AlarmTracker,
    AlertKey,
    DeEscalate,
    Escalate,
    Evaluation,
    Level,
    Open,
    Resolve,
    Update,
    episode_id,
)

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
KEY = AlertKey("p1", "limit-spo2-low")
POLICY = AlarmPolicy(persistence_s=15, clear_s=30, deescalate_s=60, update_interval_s=60)


def ev(second, level, hold=None, obs=None):
    ids = (obs,) if obs else (f"o{second}",)
    return Evaluation(T0 + timedelta(seconds=second), Level(level), ids,
                      None if hold is None else Level(hold))


def run(tracker, evaluations, policy=POLICY):
    out = []
    for e in evaluations:
        out.extend(tracker.step(KEY, e, policy))
    return out


def test_transient_shorter_than_persistence_never_alerts():
    actions = run(AlarmTracker(), [ev(0, 2), ev(10, 2), ev(14, 2), ev(15, 0), ev(20, 2)])
    assert actions == []


def test_hovering_between_set_and_clear_keeps_the_persistence_window():
    # SpO2 89, 91, 89, 91...: 91 is above the set threshold but below clear (hold level)
    hovering = [ev(s, 2 if s % 2 == 0 else 0, hold=2) for s in range(0, 15)] + [ev(16, 2)]
    [opened] = run(AlarmTracker(), hovering)
    assert isinstance(opened, Open) and opened.started == T0
    # a value past the clear threshold still restarts it
    assert run(AlarmTracker(), [ev(0, 2), ev(8, 0, hold=0), ev(16, 2)]) == []


def test_opens_after_persistence_with_all_triggering_evidence():
    actions = run(AlarmTracker(), [ev(0, 2), ev(5, 2), ev(15, 2)])
    assert len(actions) == 1
    opened = actions[0]
    assert isinstance(opened, Open)
    assert opened.level is Level.MODERATE
    assert opened.observation_ids == ("o0", "o5", "o15")
    assert opened.started == T0 and opened.time == T0 + timedelta(seconds=15)
    assert opened.episode_id == episode_id(KEY, T0)


def test_zero_persistence_opens_immediately():
    actions = run(AlarmTracker(), [ev(0, 3)], AlarmPolicy(persistence_s=0))
    assert [type(a) for a in actions] == [Open]


def test_repeats_update_instead_of_duplicating_and_are_rate_limited():
    tracker = AlarmTracker()
    actions = run(tracker, [ev(0, 2), ev(15, 2)] + [ev(15 + s, 2) for s in range(1, 130)])
    kinds = [type(a) for a in actions]
    assert kinds.count(Open) == 1
    # updates at most once per 60 s after the open at 15 s: at 75 s and at 135 s
    updates = [a for a in actions if isinstance(a, Update)]
    assert [a.time for a in updates] == [T0 + timedelta(seconds=75), T0 + timedelta(seconds=135)]
    assert len({a.episode_id for a in actions}) == 1


def test_hysteresis_value_between_clear_and_set_keeps_alert_open():
    tracker = AlarmTracker()
    run(tracker, [ev(0, 2), ev(15, 2)])
    # level 0 by the set threshold but still below the clear threshold: hold at 2
    actions = run(tracker, [ev(20 + s, 0, hold=2) for s in range(0, 120, 5)])
    assert not any(isinstance(a, Resolve) for a in actions)
    assert tracker.open_episode(KEY) is not None


def test_hysteresis_hold_never_opens_an_alert():
    assert run(AlarmTracker(), [ev(s, 0, hold=2) for s in range(0, 60, 5)]) == []


def test_auto_resolves_after_stable_clear_period():
    tracker = AlarmTracker()
    run(tracker, [ev(0, 2), ev(15, 2)])
    actions = run(tracker, [ev(20, 0), ev(40, 0), ev(49, 0), ev(50, 0)])
    assert [type(a) for a in actions] == [Resolve]
    assert actions[0].time == T0 + timedelta(seconds=50)
    assert tracker.open_episode(KEY) is None


def test_clear_period_restarts_when_condition_returns():
    tracker = AlarmTracker()
    run(tracker, [ev(0, 2), ev(15, 2)])
    actions = run(tracker, [ev(20, 0), ev(45, 2), ev(50, 0), ev(75, 0), ev(80, 0)])
    assert [type(a) for a in actions] == [Resolve]
    assert actions[0].time == T0 + timedelta(seconds=80)


def test_escalates_at_once_and_deescalates_after_stable_period():
    tracker = AlarmTracker()
    run(tracker, [ev(0, 2), ev(15, 2)])
    up = run(tracker, [ev(20, 3)])
    assert [type(a) for a in up] == [Escalate]
    assert (up[0].previous, up[0].level) == (Level.MODERATE, Level.HIGH)
    down = run(tracker, [ev(30, 2), ev(60, 2), ev(89, 2), ev(90, 2)])
    assert [type(a) for a in down] == [DeEscalate]
    assert (down[0].previous, down[0].level) == (Level.HIGH, Level.MODERATE)
    assert down[0].time == T0 + timedelta(seconds=90)


def test_new_episode_after_resolution_has_new_id():
    tracker = AlarmTracker()
    first = run(tracker, [ev(0, 2), ev(15, 2), ev(20, 0), ev(50, 0)])
    second = run(tracker, [ev(100, 2), ev(115, 2)])
    assert isinstance(second[0], Open)
    assert second[0].episode_id != first[0].episode_id


def test_dismissed_alert_stays_silent_until_condition_clears():
    tracker = AlarmTracker()
    opened = run(tracker, [ev(0, 2), ev(15, 2)])
    assert tracker.dismiss(KEY) == opened[0].episode_id
    assert run(tracker, [ev(s, 3) for s in range(20, 200, 10)]) == []
    assert run(tracker, [ev(200, 0)]) == []
    reopened = run(tracker, [ev(210, 2), ev(225, 2)])
    assert [type(a) for a in reopened] == [Open]


def test_replay_is_deterministic():
    stream = [ev(0, 2), ev(15, 2), ev(20, 3), ev(30, 0), ev(60, 0)]
    assert run(AlarmTracker(), stream) == run(AlarmTracker(), stream)


def test_keys_are_independent():
    tracker = AlarmTracker()
    other = AlertKey("p2", "limit-spo2-low")
    tracker.step(KEY, ev(0, 2), POLICY)
    assert tracker.step(other, ev(15, 2), POLICY) == []
    assert [type(a) for a in tracker.step(KEY, ev(15, 2), POLICY)] == [Open]


def test_gap_in_data_restarts_persistence():
    tracker = AlarmTracker()
    policy = AlarmPolicy(persistence_s=15, max_gap_s=10)
    # 89 % at 0 s, then nothing until 20 s: not 15 s of continuous evidence
    assert run(tracker, [ev(0, 2), ev(20, 2), ev(30, 2)], policy) == []
    [opened] = run(tracker, [ev(35, 2)], policy)
    assert opened.started == T0 + timedelta(seconds=20)


def test_long_episode_keeps_opening_evidence_and_only_the_latest_since():
    from inference.alarms import EVIDENCE_RECENT

    tracker = AlarmTracker()
    actions = run(tracker, [ev(s, 2) for s in range(0, 3600)])
    opened, *later = actions
    assert opened.observation_ids == tuple(f"o{s}" for s in range(16))
    last = [a for a in later if isinstance(a, Update)][-1]
    at = int((last.time - T0).total_seconds())
    recent = tuple(f"o{s}" for s in range(at - EVIDENCE_RECENT + 1, at + 1))
    assert last.observation_ids == opened.observation_ids + recent
    [resolved] = run(tracker, [ev(3600 + s, 0) for s in range(0, 61)])
    assert isinstance(resolved, Resolve) and len(resolved.observation_ids) == 16 + EVIDENCE_RECENT
