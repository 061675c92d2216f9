"""Rule evaluation against a window, driven through the tracker; technical conditions."""

from datetime import UTC, datetime, timedelta

from inference.alarms import AlarmTracker, AlertKey, Escalate, Level, Open, Resolve, Update
from inference.rules import evaluate_limits, evaluate_news2
from inference.ruleset import builtin_ruleset
from inference.technical import (
    CLOCK_DRIFT,
    DISCONNECTED,
    FEED_STALE,
    DeviceStatus,
    evaluate_technical,
)
from inference.vitals import Param, VitalSample
from inference.window import PatientWindow

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
ICU = builtin_ruleset("icu-limits")


def spo2(second, value):
    return VitalSample("p1", Param.SPO2, value, "%", T0 + timedelta(seconds=second),
                       "mdc:150456", f"spo2-{second}", "mon-1")


def drive(window, tracker, samples):
    actions = []
    for sample in samples:
        window.add(sample)
        for result in evaluate_limits(ICU, window, "p1", sample.time):
            if result.condition == "limit-spo2-low":
                key = AlertKey("p1", result.condition)
                actions.extend(tracker.step(key, result.evaluation, result.policy))
    return actions


def test_spo2_low_fires_after_15_s_and_clears_only_at_92():
    window, tracker = PatientWindow(), AlarmTracker()
    # 89 % for 15 s -> moderate alert (set < 90, persistence 15 s)
    actions = drive(window, tracker, [spo2(s, 89) for s in range(0, 16)])
    assert [type(a) for a in actions] == [Open]
    assert actions[0].level is Level.MODERATE and actions[0].device_ids == ("mon-1",)
    # 91 % for two minutes: above set (90) but below clear (92): stays open
    held = drive(window, tracker, [spo2(s, 91) for s in range(16, 136)])
    assert not any(isinstance(a, Resolve) for a in held)
    # 93 % for 30 s (clear_s) -> resolved
    cleared = drive(window, tracker, [spo2(s, 93) for s in range(136, 167)])
    assert [type(a) for a in cleared if not isinstance(a, Update)] == [Resolve]


def test_deep_desaturation_fires_at_once_and_escalates_open_alert():
    window, tracker = PatientWindow(), AlarmTracker()
    immediate = drive(window, tracker, [spo2(0, 84)])
    assert [(type(a), a.level) for a in immediate] == [(Open, Level.HIGH)]
    window2, tracker2 = PatientWindow(), AlarmTracker()
    drive(window2, tracker2, [spo2(s, 89) for s in range(0, 16)])
    up = drive(window2, tracker2, [spo2(16, 84)])
    assert [(type(a), a.level) for a in up] == [(Escalate, Level.HIGH)]


def test_missing_data_holds_but_never_opens():
    window = PatientWindow()
    results = {r.condition: r for r in evaluate_limits(ICU, window, "p1", T0)}
    ev = results["limit-spo2-low"].evaluation
    assert ev.level is Level.NONE and ev.hold_level is Level.HIGH


def test_news2_condition_levels():
    ward = builtin_ruleset("news2-ward")
    window = PatientWindow(horizon=timedelta(hours=24))

    def add(param, value, source="loinc:x"):
        window.add(VitalSample("p1", param, value, "", T0, source, f"{param}", None))

    for param, value in [(Param.RESP_RATE, 16), (Param.SPO2, 97), (Param.SYSTOLIC_BP, 120),
                         (Param.HEART_RATE, 70), (Param.TEMPERATURE, 37.0),
                         (Param.CONSCIOUSNESS, 0.0), (Param.O2_THERAPY, 0.0)]:
        add(param, value)
    result, cond = evaluate_news2(ward, window, "p1", T0)
    assert result.total == 0 and cond.evaluation.level is Level.NONE
    add(Param.CONSCIOUSNESS, 2.0)  # Voice: a single 3 -> low-medium -> moderate
    result, cond = evaluate_news2(ward, window, "p1", T0 + timedelta(seconds=1))
    assert result.total == 3 and cond.evaluation.level is Level.MODERATE


def test_news2_incomplete_holds():
    ward = builtin_ruleset("news2-ward")
    result, cond = evaluate_news2(ward, PatientWindow(), "p1", T0)
    assert not result.complete
    assert cond.evaluation.level is Level.NONE and cond.evaluation.hold_level is Level.HIGH


def _levels(status):
    return {r.condition: r.evaluation.level for r in evaluate_technical(ICU.technical, status)}


def test_technical_conditions():
    ok = DeviceStatus("mon-1", "p1", T0, True, T0 - timedelta(seconds=30), T0 - timedelta(seconds=25))
    assert set(_levels(ok).values()) == {Level.NONE}
    stale = DeviceStatus("mon-1", "p1", T0, True, T0 - timedelta(seconds=31))
    assert _levels(stale)[FEED_STALE] is Level.MODERATE
    gone = DeviceStatus("mon-1", "p1", T0, False, T0 - timedelta(seconds=31))
    assert _levels(gone)[DISCONNECTED] is Level.MODERATE and _levels(gone)[FEED_STALE] is Level.NONE
    drift = DeviceStatus("mon-1", "p1", T0, True, T0, T0 + timedelta(seconds=6))
    assert _levels(drift)[CLOCK_DRIFT] is Level.MODERATE
