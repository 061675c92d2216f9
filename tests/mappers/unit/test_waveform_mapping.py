"""Waveforms: HL7v2 NA arrays (IHE PCD WCM) and the shared builder -> SampledData Observations
that the alerting engine never reads."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.observation import Observation

from gateway.simulators import BedFeed, Physiology, monitor_oru
from gateway.simulators.waveforms import MonitorWaves, VentWaves
from inference.vitals import sample_from_observation
from mappers.hl7v2 import HL7Error, MappingContext, map_message, parse
from mappers.waveform import WAVES, is_waveform, one_second_segments, waveform_observation

CTX = MappingContext(site_tz=ZoneInfo("UTC"))
MSH = "MSH|^~\\&|MON|ICU|||20240301101500||ORU^R01|1|P|2.6\rPID|||77^^^H^MR\r"
ECG = ("OBX|1|NA|131330^MDC_ECG_ELEC_POTL_II^MDC|1.2.1.1|10^-20^300^1100^\"\"^5|"
       "266419^MDC_DIM_MICRO_VOLT^MDC|||||R|||20240301101500\r"
       "OBX|2|NM|0^MDC_ATTR_SAMP_RATE^MDC|1.2.1.1.1|250|/s^per second^UCUM|||||R\r")


def _observations(raw: str) -> list[dict]:
    res = map_message(parse(raw.encode()), CTX).resources
    return [r for r in res if r["resourceType"] == "Observation"]


def test_na_obx_with_sample_rate_is_one_waveform_observation() -> None:
    obs = _observations(MSH + ECG)
    assert len(obs) == 1  # the sampling-rate OBX is an attribute, not a metric
    wave = obs[0]
    Observation.model_validate(wave)
    assert wave["code"]["coding"][0] == {"system": "urn:iso:std:iso:11073:10101", "code": "131330",
                                         "display": "MDC_ECG_ELEC_POTL_II"}
    sd = wave["valueSampledData"]
    assert sd["data"] == "10 -20 300 1100 E 5"
    assert sd["period"] == Decimal("4")  # 1000 ms / 250 Hz
    assert sd["origin"]["code"] == "uV" and sd["dimensions"] == 1
    assert is_waveform(wave)
    assert all(c["coding"][0]["code"] != "vital-signs" for c in wave["category"])
    assert sample_from_observation({**wave, "subject": {"reference": "Patient/p"}}) == []


def test_sample_period_attribute_in_ms() -> None:
    raw = MSH + ECG.replace("0^MDC_ATTR_SAMP_RATE^MDC", "67981^MDC_ATTR_TIME_PD_SAMP^MDC").replace(
        "|250|/s^per second^UCUM", "|2|264338^MDC_DIM_MILLI_SEC^MDC")
    assert _observations(raw)[0]["valueSampledData"]["period"] == Decimal("2")


@pytest.mark.parametrize("bad", ["1^2^x", "1^^2.5.3", "--1"])
def test_non_numeric_arrays_are_refused(bad: str) -> None:
    raw = MSH + f"OBX|1|NA|131330^MDC_ECG_ELEC_POTL_II^MDC|1.2.1.1|{bad}|266419^MDC_DIM_MICRO_VOLT^MDC|||||R\r"
    with pytest.raises(HL7Error) as info:
        map_message(parse(raw.encode()), CTX)
    assert info.value.code == 102 and info.value.location == "OBX^1^5"


def test_simulated_monitor_waves_decode_at_their_rates() -> None:
    phys = Physiology("stable", 1)
    waves = MonitorWaves().block(phys.vitals)
    assert {k: len(v) for k, v in waves.items()} == {"ecg_ii": 250, "pleth": 125, "abp": 125}
    msg = monitor_oru(BedFeed(3), phys.vitals, datetime(2026, 1, 1, tzinfo=UTC), "c1", waves=waves)
    obs = _observations(msg.decode())
    wave = {o["code"]["coding"][-1]["code"]: o for o in obs if is_waveform(o)}
    assert set(wave) == {"131330", "150452", "150036"}
    assert wave["131330"]["valueSampledData"]["period"] == Decimal(4)
    assert wave["150452"]["valueSampledData"]["period"] == Decimal(8)
    ecg = [int(x) for x in wave["131330"]["valueSampledData"]["data"].split()]
    assert ecg == waves["ecg_ii"] and max(ecg) > 500  # an R wave is in every second at ~78 bpm
    abp = [int(x) for x in wave["150036"]["valueSampledData"]["data"].split()]
    assert min(abp) >= round(phys.vitals.dbp) - 1 and max(abp) <= round(phys.vitals.sbp) + 1
    for o in obs:
        Observation.model_validate(o)
    vitals = [o for o in obs if not is_waveform(o)]
    assert len(vitals) >= 6  # numerics unchanged beside the waves


def test_builder_segments_and_ids() -> None:
    paw, flow = VentWaves(peep=5).block(Physiology("stable", 2).vitals, ppeak=25, seconds=2.0)
    assert len(paw) == len(flow) == 100 and min(paw) >= 5 and max(paw) <= 25
    start = datetime(2026, 1, 1, 8, tzinfo=UTC)
    segs = list(one_second_segments(paw, 50, start))
    assert [len(s) for _, s in segs] == [50, 50] and segs[1][0] == datetime(2026, 1, 1, 8, 0, 1, tzinfo=UTC)
    obs = [waveform_observation(spec=WAVES["paw"], device_ref="Device/v1", start=t, period_ms=20,
                                samples=s, subject_ref="Patient/p") for t, s in segs]
    for o in obs:
        Observation.model_validate(o)
    assert obs[0]["id"] != obs[1]["id"]
    assert obs[0]["effectivePeriod"]["end"] == "2026-01-01T08:00:01+00:00"
    again = waveform_observation(spec=WAVES["paw"], device_ref="Device/v1", start=start, period_ms=20,
                                 samples=segs[0][1])
    assert again["id"] == obs[0]["id"]
    assert sample_from_observation(obs[0]) == []
    with pytest.raises(ValueError):
        waveform_observation(spec=WAVES["flow"], device_ref="Device/v1", start=start, period_ms=20, samples=[])
