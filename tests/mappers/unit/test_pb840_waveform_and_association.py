"""PB840 waveform-port stream decoding, device-patient association resources, clock drift."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.deviceusestatement import DeviceUseStatement
from fhir.resources.R4B.observation import Observation

from gateway.simulators.pb840 import waveform_lines
from mappers.association import (
    UNCONFIRMED_TAG,
    association_of,
    bed_location_id,
    device_use_statement,
    tag_unconfirmed,
)
from mappers.device_status import clock_drift_observation
from mappers.pb840 import WaveformStream

AT = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_waveform_stream_cuts_one_second_segments_across_reads() -> None:
    text = b"BS, S:1,\r\n" + b"".join(f"{i}.5, {i % 7}.25\r\n".encode() for i in range(60)) + b"BE\r\nBS, S:2,\r\n"
    stream = WaveformStream()
    segments = []
    for i in range(0, len(text), 37):  # arbitrary TCP segmentation
        segments += stream.feed(text[i : i + 37])
    assert len(segments) == 1 and segments[0].index == 0
    assert segments[0].flow[:3] == [0.5, 1.5, 2.5] and segments[0].pressure[:3] == [0.25, 1.25, 2.25]
    assert len(segments[0].flow) == 50 and stream.breaths == 2 and stream.bad_lines == []
    more = stream.feed(b"".join(f"{i}, 1\n".encode() for i in range(40)))
    assert [s.index for s in more] == [1] and more[0].flow[:2] == [50.5, 51.5]


def test_waveform_stream_reports_malformed_lines_and_runaway_bytes() -> None:
    stream = WaveformStream()
    stream.feed(b"12.0, abc\r\n\xff\xfe\r\nBS, S:x\r\n3.0, 4.0\r\n")
    assert stream.bad_lines == [b"12.0, abc", b"\xff\xfe", b"BS, S:x"]
    stream.bad_lines.clear()
    stream.feed(b"9" * 100)  # no line end: dropped as garbage, not buffered forever
    assert len(stream.bad_lines) == 1 and stream._buffer == b""


def test_simulator_lines_decode() -> None:
    raw = waveform_lines([1.0] * 50, [5.5] * 50, breath=3, end=True)
    (seg,) = WaveformStream().feed(raw)
    assert seg.flow == [1.0] * 50 and seg.pressure == [5.5] * 50


def test_bed_location_id_matches_the_hl7_mapper() -> None:
    assert bed_location_id("ICU^3^1") == "225eaa0e-34da-55d2-9cdd-4dce805aed05"
    with pytest.raises(ValueError):
        bed_location_id("")


def test_device_use_statement_states() -> None:
    dus = device_use_statement("intellivue-0009fb000003", "Patient/p1", "loc-1", AT)
    DeviceUseStatement.model_validate(dus)
    assert dus["meta"]["tag"] == [UNCONFIRMED_TAG] and association_of(dus) == ("Patient/p1", False)
    ok = device_use_statement("intellivue-0009fb000003", "Patient/p1", None, AT, status="confirmed")
    DeviceUseStatement.model_validate(ok)
    assert "meta" not in ok and association_of(ok) == ("Patient/p1", True) and ok["id"] == dus["id"]
    assert association_of({**ok, "status": "entered-in-error"}) == (None, False)
    obs = {"resourceType": "Observation"}
    tag_unconfirmed(obs)
    tag_unconfirmed(obs)
    assert obs["meta"]["tag"] == [UNCONFIRMED_TAG]


@pytest.mark.parametrize("drift, status", [(300.0, "clock-drift"), (-5.0, "clock-ok")])
def test_clock_drift_observation(drift: float, status: str) -> None:
    obs = clock_drift_observation("Device/d1", drift, 120.0, AT, "Patient/p1")
    Observation.model_validate(obs)
    assert obs["valueQuantity"]["value"] == drift
    assert obs["component"][0]["valueCodeableConcept"]["coding"][0]["code"] == status
    assert ("interpretation" in obs) is (status == "clock-drift")
    with pytest.raises(ValueError):
        clock_drift_observation("Device/d1", 1.0, 1.0, datetime(2026, 1, 1))  # noqa: DTZ001 - naive on purpose
