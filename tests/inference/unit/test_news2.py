"""Golden NEWS2 tests: every band edge of the RCP 2017 chart, both sides, plus half-up rounding."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from inference.news2 import (
    News2Config,
    News2Inputs,
    RiskBand,
    compute_news2,
    half_up,
    news2_from_window,
    score_air_or_oxygen,
    score_consciousness,
    score_pulse,
    score_resp_rate,
    score_spo2_scale1,
    score_spo2_scale2,
    score_systolic_bp,
    score_temperature,
)
from inference.vitals import Param, VitalSample
from inference.window import PatientWindow


# Chart 1: respiration rate  <=8:3  9-11:1  12-20:0  21-24:2  >=25:3
@pytest.mark.parametrize(
    ("value", "score"),
    [(0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3),
     (8.49, 3), (8.5, 1), (11.5, 0), (20.49, 0), (20.5, 2), (24.5, 3)],
)
def test_resp_rate_bands(value, score):
    assert score_resp_rate(value) == score


# SpO2 scale 1: <=91:3  92-93:2  94-95:1  >=96:0
@pytest.mark.parametrize(
    ("value", "score"),
    [(50, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0),
     (91.5, 2), (91.49, 3), (93.5, 1), (95.5, 0), (95.49, 1)],
)
def test_spo2_scale1_bands(value, score):
    assert score_spo2_scale1(value) == score


# SpO2 scale 2: <=83:3  84-85:2  86-87:1  88-92:0  >=93 on air:0  93-94 O2:1  95-96 O2:2  >=97 O2:3
@pytest.mark.parametrize(
    ("value", "on_oxygen", "score"),
    [(83, False, 3), (84, False, 2), (85, True, 2), (86, True, 1), (87, False, 1),
     (88, False, 0), (92, True, 0), (92, False, 0), (93, False, 0), (100, False, 0),
     (93, True, 1), (94, True, 1), (95, True, 2), (96, True, 2), (97, True, 3), (100, True, 3),
     (83.5, False, 2), (92.5, True, 1), (96.5, True, 3), (96.49, True, 2)],
)
def test_spo2_scale2_bands(value, on_oxygen, score):
    assert score_spo2_scale2(value, on_oxygen) == score


def test_air_or_oxygen():
    assert score_air_or_oxygen(True) == 2
    assert score_air_or_oxygen(False) == 0


# Systolic BP: <=90:3  91-100:2  101-110:1  111-219:0  >=220:3
@pytest.mark.parametrize(
    ("value", "score"),
    [(60, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3),
     (90.5, 2), (90.49, 3), (100.5, 1), (110.5, 0), (219.49, 0), (219.5, 3)],
)
def test_systolic_bp_bands(value, score):
    assert score_systolic_bp(value) == score


# Pulse: <=40:3  41-50:1  51-90:0  91-110:1  111-130:2  >=131:3
@pytest.mark.parametrize(
    ("value", "score"),
    [(30, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2),
     (130, 2), (131, 3), (200, 3), (40.5, 1), (50.5, 0), (90.5, 1), (90.49, 0), (130.5, 3)],
)
def test_pulse_bands(value, score):
    assert score_pulse(value) == score


@pytest.mark.parametrize(("letter", "score"), [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)])
def test_consciousness(letter, score):
    assert score_consciousness(letter) == score


def test_consciousness_rejects_other_letters():
    with pytest.raises(ValueError):
        score_consciousness("X")


# Temperature: <=35.0:3  35.1-36.0:1  36.1-38.0:0  38.1-39.0:1  >=39.1:2
@pytest.mark.parametrize(
    ("value", "score"),
    [(33.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1),
     (39.1, 2), (41.0, 2),
     (35.04, 3), (35.05, 1), (36.04, 1), (36.05, 0), (38.04, 0), (38.05, 1), (39.04, 1),
     (39.05, 2)],
)
def test_temperature_bands(value, score):
    assert score_temperature(value) == score


def test_half_up_differs_from_python_round():
    assert round(90.5) == 90  # banker's rounding, which the chart does not use
    assert str(half_up(90.5)) == "91"
    assert str(half_up(35.05, 1)) == "35.1"
    assert str(half_up(2.675, 2)) == "2.68"


NORMAL = News2Inputs(
    resp_rate=16, spo2=97, on_oxygen=False, systolic_bp=120, pulse=70, consciousness="A",
    temperature=37.0,
)


def _with(**changes):
    return replace(NORMAL, **changes)


def test_normal_patient_scores_zero_low():
    result = compute_news2(NORMAL)
    assert result.complete and result.total == 0 and result.band is RiskBand.LOW
    assert [s.parameter for s in result.subscores] == [
        "resp_rate", "spo2", "air_or_oxygen", "systolic_bp", "pulse", "consciousness",
        "temperature",
    ]


def test_band_low_up_to_four():
    # RR 21 (2) + pulse 91 (1) + temp 38.1 (1) = 4
    result = compute_news2(_with(resp_rate=21, pulse=91, temperature=38.1))
    assert (result.total, result.band) == (4, RiskBand.LOW)


def test_single_three_is_low_medium():
    result = compute_news2(_with(consciousness="C"))
    assert (result.total, result.band) == (3, RiskBand.LOW_MEDIUM)


def test_total_five_is_medium():
    # oxygen (2) + SpO2 92 scale 1 (2) + pulse 91 (1) = 5
    result = compute_news2(_with(on_oxygen=True, spo2=92, pulse=91))
    assert (result.total, result.band) == (5, RiskBand.MEDIUM)


def test_total_six_is_medium_and_seven_is_high():
    six = compute_news2(_with(on_oxygen=True, spo2=92, pulse=111))
    seven = compute_news2(_with(on_oxygen=True, spo2=92, pulse=131))
    assert (six.total, six.band) == (6, RiskBand.MEDIUM)
    assert (seven.total, seven.band) == (7, RiskBand.HIGH)


def test_maximum_total_is_twenty():
    worst = compute_news2(News2Inputs(
        resp_rate=30, spo2=80, on_oxygen=True, systolic_bp=80, pulse=140, consciousness="U",
        temperature=34.0,
    ))
    # 3 + 3 + 2 + 3 + 3 + 3 + 3
    assert worst.total == 20 and worst.band is RiskBand.HIGH


def test_scale2_on_air_high_saturation_scores_zero():
    result = compute_news2(_with(spo2=98, spo2_scale=2))
    assert result.total == 0


def test_scale2_on_oxygen_high_saturation_scores_three_plus_oxygen():
    result = compute_news2(_with(spo2=97, on_oxygen=True, spo2_scale=2))
    assert result.total == 5 and result.band is RiskBand.MEDIUM


@pytest.mark.parametrize(
    "missing",
    ["resp_rate", "spo2", "on_oxygen", "systolic_bp", "pulse", "consciousness", "temperature"],
)
def test_missing_parameter_is_incomplete(missing):
    result = compute_news2(_with(**{missing: None}))
    expected_name = "air_or_oxygen" if missing == "on_oxygen" else missing
    assert result.complete is False
    assert result.total is None and result.band is None
    assert result.missing == (expected_name,)
    assert len(result.subscores) == 6


T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _s(param, value, minutes_ago, source="loinc:x", obs="o"):
    return VitalSample("p1", param, value, "", T0 - timedelta(minutes=minutes_ago), source,
                       f"{obs}-{param}-{minutes_ago}", None)


def _full_window(rr_minutes_ago=1, oxygen=True):
    window = PatientWindow(horizon=timedelta(hours=24))
    samples = [
        _s(Param.RESP_RATE, 16, rr_minutes_ago), _s(Param.SPO2, 97, 1),
        _s(Param.SYSTOLIC_BP, 120, 10), _s(Param.HEART_RATE, 70, 1, "mdc:147842"),
        _s(Param.TEMPERATURE, 37.0, 60), _s(Param.CONSCIOUSNESS, 0.0, 120),
    ]
    if oxygen:
        samples.append(_s(Param.O2_THERAPY, 0.0, 120))
    for sample in samples:
        window.add(sample)
    return window


def test_window_complete_and_evidence_ids():
    result = news2_from_window(_full_window(), T0, News2Config())
    assert result.complete and result.total == 0
    assert "o-heart_rate-1" in result.observation_ids


def test_window_stale_parameter_is_incomplete():
    # default maximum age of the respiration rate is 15 minutes
    assert news2_from_window(_full_window(rr_minutes_ago=15), T0, News2Config()).complete
    stale = news2_from_window(_full_window(rr_minutes_ago=16), T0, News2Config())
    assert stale.complete is False and stale.missing == ("resp_rate",)


def test_window_fio2_above_21_means_oxygen():
    window = _full_window()
    window.add(_s(Param.FIO2, 21.4, 1, "mdc:152196"))
    assert news2_from_window(window, T0, News2Config()).total == 0  # 21.4 rounds to 21: air
    window.add(_s(Param.FIO2, 21.5, 0, "mdc:152196"))
    assert news2_from_window(window, T0, News2Config()).total == 2  # 21.5 rounds to 22: oxygen


def test_window_unknown_air_or_oxygen_is_incomplete_unless_configured():
    window = _full_window(oxygen=False)
    assert news2_from_window(window, T0, News2Config()).missing == ("air_or_oxygen",)
    assumed = news2_from_window(window, T0, News2Config(assume_air_when_unknown=True))
    assert assumed.complete and assumed.total == 0


def test_window_pulse_prefers_ecg_over_pleth():
    window = _full_window()
    window.add(_s(Param.HEART_RATE, 140, 0, "mdc:149530"))  # newer pleth pulse, artefact
    assert news2_from_window(window, T0, News2Config()).total == 0  # ECG 70 wins


def test_window_scale2_from_argument():
    window = _full_window()
    window.add(_s(Param.SPO2, 90, 0))
    assert news2_from_window(window, T0, News2Config()).total == 3
    assert news2_from_window(window, T0, News2Config(), spo2_scale=2).total == 0
