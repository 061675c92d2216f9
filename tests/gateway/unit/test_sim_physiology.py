"""Physiology model: seeded, scenario-driven, plausible."""

from __future__ import annotations

import pytest

from gateway.simulators import SCENARIOS, Physiology


def run(scenario, seconds=900, seed=7):
    p = Physiology(scenario, seed, onset_s=60, ramp_s=300)
    for _ in range(seconds):
        v = p.advance(1.0)
    return p, v


def test_same_seed_same_trajectory():
    a = [Physiology("sepsis", 3).advance(1.0) for _ in range(1)]
    b = [Physiology("sepsis", 3).advance(1.0) for _ in range(1)]
    assert a == b
    _, x = run("stable", 100, seed=1)
    _, y = run("stable", 100, seed=2)
    assert x != y


def test_stable_stays_normal():
    p = Physiology("stable", 11)
    for _ in range(1800):
        v = p.advance(1.0)
        assert 55 <= v.hr <= 100
        assert 92 <= v.spo2 <= 100
        assert 8 <= v.rr <= 22
        assert v.dbp < v.sbp
    assert p.severity() == 0.0 or p.scenario == "stable"


def test_sepsis_tachycardia_and_low_pressure():
    p, v = run("sepsis")
    assert p.severity() == 1.0
    assert v.hr > 105  # baseline ~78 + 42 at full severity
    assert v.map < 75  # baseline ~90 falls ~30
    assert v.rr > 18


def test_respiratory_failure_desaturates():
    _, v = run("respiratory-failure")
    assert v.spo2 < 90
    assert v.rr > 22
    assert v.etco2 > 50


def test_hypotension():
    _, v = run("hypotension")
    assert v.sbp < 95
    assert v.map < 70


def test_device_disconnect_window():
    p = Physiology("device-disconnect", 1, onset_s=10, disconnect_s=20)
    seen = []
    for _ in range(40):
        p.advance(1.0)
        seen.append(p.connected())
    assert seen[:9] == [True] * 9
    assert seen[9:29] == [False] * 20  # t = 10 .. 29
    assert seen[29:] == [True] * 11


def test_unknown_scenario_and_backwards_time():
    with pytest.raises(ValueError, match="unknown scenario"):
        Physiology("zombie")
    with pytest.raises(ValueError):
        Physiology().advance(-1)
    assert len(SCENARIOS) == 5


def test_expected_is_the_noise_free_trajectory():
    # stable: the mean never moves; the monitored values do
    p = Physiology("stable", 5)
    start = p.expected
    values = {p.advance(1.0).hr for _ in range(120)}
    assert p.expected == start and len(values) > 1
    # a deterioration: the mean moves monotonically towards the scenario's target, after the onset only
    p = Physiology("hypotension", 5, onset_s=60, ramp_s=300)
    sbp = []
    for _ in range(600):
        p.advance(1.0)
        sbp.append(p.expected.sbp)
    assert sbp[0] == sbp[58]  # nothing before the onset
    assert all(b <= a for a, b in zip(sbp[60:], sbp[61:], strict=False))
    assert sbp[-1] < sbp[0] - 35  # towards baseline - 45
