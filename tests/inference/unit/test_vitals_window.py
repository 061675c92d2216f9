"""Observation dicts to samples; the bounded window and its queries."""

from datetime import UTC, datetime, timedelta

import pytest

from inference.vitals import Param, VitalSample, sample_from_observation
from inference.window import PatientWindow, WindowStore, slope_per_minute

MDC = "urn:iso:std:iso:11073:10101"
LOINC = "http://loinc.org"
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def obs(codings, value=None, unit="/min", **extra):
    out = {
        "resourceType": "Observation", "id": "obs-1", "status": "final",
        "code": {"coding": [{"system": s, "code": c} for s, c in codings]},
        "subject": {"reference": "Patient/p1"}, "device": {"reference": "Device/mon-1"},
        "effectiveDateTime": "2026-11-28T10:00:00+00:00",
    }
    if value is not None:
        out["valueQuantity"] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                                "code": unit}
    out.update(extra)
    return out


def test_ecg_heart_rate_prefers_mdc_source_code():
    [s] = sample_from_observation(obs([(LOINC, "8867-4"), (MDC, "147842")], 72))
    assert s == VitalSample("p1", Param.HEART_RATE, 72.0, "/min", T0, "mdc:147842", "obs-1", "mon-1")


def test_bp_panel_component_systolic():
    o = obs([(LOINC, "85354-9"), (MDC, "150020")])
    o["component"] = [
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}, {"system": MDC, "code": "150021"}]},
         "valueQuantity": {"value": 95, "code": "mm[Hg]"}},
        {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
         "valueQuantity": {"value": 60, "code": "mm[Hg]"}},
    ]
    [s] = sample_from_observation(o)
    assert (s.param, s.value, s.source_code) == (Param.SYSTOLIC_BP, 95.0, "mdc:150021")


@pytest.mark.parametrize(
    ("codings", "value", "unit", "param", "expected"),
    [
        ([(LOINC, "9279-1")], 18, "/min", Param.RESP_RATE, 18.0),
        ([(MDC, "150456")], 94, "%", Param.SPO2, 94.0),
        ([(LOINC, "8310-5")], 98.6, "[degF]", Param.TEMPERATURE, 37.0),
        ([(MDC, "152196")], 0.4, "1", Param.FIO2, 40.0),
        ([(LOINC, "3150-0")], 35, "%", Param.FIO2, 35.0),
        ([(LOINC, "3151-8")], 2, "L/min", Param.O2_THERAPY, 2.0),
    ],
)
def test_codes_and_units(codings, value, unit, param, expected):
    [s] = sample_from_observation(obs(codings, value, unit))
    assert s.param is param and s.value == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [({"valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct",
                                            "code": "450847001"}]}}, 3.0),
     ({"valueCodeableConcept": {"text": "Alert"}}, 0.0),
     ({"valueString": "C"}, 1.0)],
)
def test_consciousness(value, expected):
    [s] = sample_from_observation(obs([(LOINC, "67775-7")], **value))
    assert s.param is Param.CONSCIOUSNESS and s.value == expected


def test_ignored_observations():
    assert sample_from_observation(obs([(LOINC, "2339-0")], 5)) == []  # glucose: not a vital here
    assert sample_from_observation(obs([(LOINC, "8867-4")], 70, status="entered-in-error")) == []
    naive = obs([(LOINC, "8867-4")], 70, effectiveDateTime="2026-11-28T10:00:00")
    assert sample_from_observation(naive) == []
    assert sample_from_observation(obs([(LOINC, "67775-7")], valueString="asleep")) == []
    no_patient = obs([(LOINC, "8867-4")], 70, subject={"reference": "Group/g"})
    assert sample_from_observation(no_patient) == []


def hr(seconds, value, source="mdc:147842", oid=None):
    return VitalSample("p1", Param.HEART_RATE, value, "/min", T0 + timedelta(seconds=seconds),
                       source, oid or f"hr-{seconds}-{source}", None)


def test_window_orders_late_samples_and_queries_at_time():
    w = PatientWindow()
    for s in (hr(0, 60), hr(20, 80), hr(10, 70)):
        w.add(s)
    assert [s.value for s in w.samples(Param.HEART_RATE)] == [60, 70, 80]
    assert w.at_time(Param.HEART_RATE, T0 + timedelta(seconds=15)).value == 70
    assert w.at_time(Param.HEART_RATE, T0 - timedelta(seconds=1)) is None


def test_window_resent_reading_replaces():
    w = PatientWindow()
    w.add(hr(0, 60, oid="x"))
    w.add(hr(0, 61, oid="x"))
    assert [s.value for s in w.samples(Param.HEART_RATE)] == [61]


def test_window_is_bounded_by_horizon_and_count():
    w = PatientWindow(horizon=timedelta(minutes=1), max_per_param=5)
    for second in range(0, 120, 10):
        w.add(hr(second, 60))
    times = [(s.time - T0).total_seconds() for s in w.samples(Param.HEART_RATE)]
    assert times == [70, 80, 90, 100, 110]


def test_latest_source_priority_and_max_age():
    w = PatientWindow()
    w.add(hr(0, 70, "mdc:147842"))
    w.add(hr(50, 140, "mdc:149530"))
    w.add(hr(55, 90, "mdc:149546"))
    at = T0 + timedelta(seconds=60)
    assert w.latest(Param.HEART_RATE, at).value == 70  # ECG first
    assert w.latest(Param.HEART_RATE, at, timedelta(seconds=30)).value == 140  # ECG too old
    assert w.latest(Param.HEART_RATE, at, timedelta(seconds=5)).value == 90  # age 5 s: fresh
    assert w.latest(Param.HEART_RATE, at, timedelta(seconds=4)) is None


def test_trend_slope_per_minute():
    w = PatientWindow()
    for minute in range(6):
        w.add(hr(minute * 60, 60 + 2 * minute))
    at = T0 + timedelta(minutes=5)
    assert w.trend(Param.HEART_RATE, timedelta(minutes=5), at) == pytest.approx(2.0)
    assert w.trend(Param.HEART_RATE, timedelta(seconds=30), at) is None
    assert slope_per_minute([]) is None


def test_store_routes_by_patient():
    store = WindowStore()
    store.add(hr(0, 60))
    assert len(store) == 1 and store.get("p1") is not None and store.get("p2") is None
    store.forget("p1")
    assert len(store) == 0


def test_decimal_values_from_mappers():
    from decimal import Decimal

    o = obs([(LOINC, "8867-4"), (MDC, "149546")], 63)
    o["valueQuantity"]["value"] = Decimal("63.5")
    [s] = sample_from_observation(o)
    assert (s.value, s.source_code) == (63.5, "mdc:149546")
    o["valueQuantity"]["value"] = True  # a boolean is not a number here
    assert sample_from_observation(o) == []


def test_baseline_is_a_median_over_enough_history():
    w = PatientWindow()
    at = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    for s in range(0, 200):
        w.add(VitalSample("p", Param.HEART_RATE, 180.0 if s % 50 == 0 else 80.0 + (s % 3), "", at(s),
                          "mdc:147842", f"h{s}", None))
    # a median: the four 180 artefacts do not move it
    assert w.baseline(Param.HEART_RATE, at(199), timedelta(seconds=300)) == 81.0
    # under half the span covered: no baseline yet
    assert w.baseline(Param.HEART_RATE, at(199), timedelta(seconds=600)) is None
    assert w.baseline(Param.HEART_RATE, at(199), timedelta(seconds=100), min_samples=500) is None
    assert w.baseline(Param.SPO2, at(199), timedelta(seconds=100)) is None


def test_baseline_recomputed_every_refresh_and_on_replay():
    w = PatientWindow()
    at = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    for s in range(0, 100):
        w.add(VitalSample("p", Param.HEART_RATE, 80.0, "", at(s), "mdc:147842", f"h{s}", None))
    span = timedelta(seconds=100)
    assert w.baseline(Param.HEART_RATE, at(99), span) == 80.0
    for s in range(100, 200):
        w.add(VitalSample("p", Param.HEART_RATE, 120.0, "", at(s), "mdc:147842", f"h{s}", None))
    assert w.baseline(Param.HEART_RATE, at(105), span) == 80.0  # cached: within 10 s
    assert w.baseline(Param.HEART_RATE, at(199), span) == 120.0  # recomputed
    assert w.baseline(Param.HEART_RATE, at(99), span) == 80.0  # an earlier end recomputes


# -- the columnar window at its boundaries ------------------------------------------------------

def test_expiry_keeps_a_sample_exactly_at_the_horizon():
    w = PatientWindow(horizon=timedelta(seconds=60))
    for second in (0, 30, 60):
        w.add(hr(second, 60 + second))
    assert [s.value for s in w.samples(Param.HEART_RATE)] == [60, 90, 120]  # age 60 s: still in
    w.add(hr(60.000001, 121))
    assert [s.value for s in w.samples(Param.HEART_RATE)] == [90, 120, 121]


def test_late_sample_older_than_the_horizon_is_dropped_and_one_inside_is_placed():
    w = PatientWindow(horizon=timedelta(seconds=60))
    for second in range(0, 200, 10):
        w.add(hr(second, second))
    w.add(hr(100, -1))  # older than the horizon behind 190 s: gone at once
    w.add(hr(175, 175.5))
    assert [s.value for s in w.samples(Param.HEART_RATE)] == [130, 140, 150, 160, 170, 175.5, 180, 190]
    assert w.at_time(Param.HEART_RATE, T0 + timedelta(seconds=176)).observation_id == "hr-175-mdc:147842"


def test_equal_times_keep_arrival_order_and_a_resend_replaces_in_place():
    w = PatientWindow()
    w.add(hr(5, 70, oid="a"))
    w.add(hr(5, 71, oid="b"))
    w.add(hr(5, 72, oid="a"))  # the same reading again, corrected
    got = [(s.observation_id, s.value) for s in w.samples(Param.HEART_RATE)]
    assert got == [("a", 72), ("b", 71)]


def test_long_run_keeps_ids_devices_and_times_exact_through_compaction():
    w = PatientWindow(horizon=timedelta(minutes=2), max_per_param=1024)
    for second in range(5000):
        w.add(VitalSample("p1", Param.SPO2, 90 + second % 7, "%", T0 + timedelta(seconds=second, microseconds=7),
                          "mdc:150456", f"spo2-{second}-ü", f"mon-{second // 1000}"))
    rows = w.samples(Param.SPO2)
    assert len(rows) == 121 and rows[0].observation_id == "spo2-4879-ü" and rows[-1].device_id == "mon-4"
    assert rows[-1].time == T0 + timedelta(seconds=4999, microseconds=7)
    latest = w.latest(Param.SPO2, T0 + timedelta(seconds=4999, microseconds=7), timedelta(0))
    assert latest is not None and latest.observation_id == "spo2-4999-ü"


def test_count_bound_applies_before_the_horizon():
    w = PatientWindow(horizon=timedelta(hours=1), max_per_param=3)
    for second in range(10):
        w.add(hr(second, second))
    w.add(hr(0.5, 99))  # late and beyond the count bound: the oldest row goes, which is this one
    assert [s.value for s in w.samples(Param.HEART_RATE)] == [7, 8, 9]


def test_rebuild_in_log_order_gives_the_same_answers_as_arrival_in_time_order():
    samples = [hr(s, 60 + (s * 7) % 23, source=("mdc:147842", "mdc:149530")[s % 2]) for s in range(0, 900, 3)]
    in_order, rebuilt = PatientWindow(), PatientWindow()
    for s in samples:
        in_order.add(s)
    for s in samples[1::2] + samples[::2]:  # a restart reads the log, which need not be in time order
        rebuilt.add(s)
    at = T0 + timedelta(seconds=899)
    for w in (in_order, rebuilt):
        assert w.latest(Param.HEART_RATE, at).observation_id == "hr-894-mdc:147842"  # ECG first
        assert w.latest(Param.HEART_RATE, at, timedelta(seconds=4)).observation_id == "hr-897-mdc:149530"
    assert in_order.trend(Param.HEART_RATE, timedelta(minutes=15), at) == rebuilt.trend(
        Param.HEART_RATE, timedelta(minutes=15), at)
    assert in_order.baseline(Param.HEART_RATE, at, timedelta(minutes=10)) == rebuilt.baseline(
        Param.HEART_RATE, at, timedelta(minutes=10))


def test_trend_is_the_datetime_slope_to_the_bit():
    w = PatientWindow()
    points = [(T0 + timedelta(seconds=s * 1.37, microseconds=s * 11), 80 + (s * 13) % 9 / 3) for s in range(300)]
    for t, v in points:
        w.add(VitalSample("p1", Param.HEART_RATE, v, "/min", t, "mdc:147842", f"{t}", None))
    at = points[-1][0]
    assert w.trend(Param.HEART_RATE, timedelta(minutes=15), at) == slope_per_minute(points)


def test_window_holds_no_objects_per_sample_for_the_collector():
    import gc

    w = PatientWindow()
    w.add(hr(0, 60))
    before = len(gc.get_objects())
    for second in range(1, 2001):
        w.add(hr(second, 60, source=("mdc:147842", "mdc:149530")[second % 2]))
    assert len(gc.get_objects()) - before < 50  # a few small tables, not a row each
