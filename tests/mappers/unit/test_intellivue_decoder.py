"""IntelliVue Data Export decoding: FLOAT-Type, the association request, poll replies built by
hand here (byte by byte from the Programming Guide layout), validity states, truncation."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation

from inference.vitals import sample_from_observation
from mappers.intellivue import (
    AssociationResult,
    ConnectIndication,
    IntellivueDecodeError,
    KeepAliveResult,
    MdsCreateEvent,
    PollResult,
    RemoteError,
    SessionEnd,
    association_request,
    decode_abs_time,
    decode_float,
    decode_message,
    intellivue_device,
    keep_alive_request,
    mds_create_result,
    poll_to_fhir,
    release_request,
)
from mappers.profiles import load_profile
from mappers.waveform import is_waveform

PROFILE = load_profile("philips-intellivue-mp")
AT = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("raw, value, special", [
    (0x00000048, 72.0, None),          # exponent 0, mantissa 72
    (0xFF0003D9, 98.5, None),          # exponent -1, mantissa 985
    (0xFE000971, 24.17, None),         # exponent -2, mantissa 2417
    (0x00FFFFFF, -1.0, None),          # mantissa is two's complement
    (0x02000003, 300.0, None),         # positive exponent
    (0x007FFFFF, None, "NaN"),
    (0x00800000, None, "NRes"),
    (0x007FFFFE, None, "+INF"),
    (0x00800002, None, "-INF"),
])
def test_float_type(raw: int, value: float | None, special: str | None) -> None:
    assert decode_float(raw) == (value, special)


def test_absolute_time_is_bcd() -> None:
    assert decode_abs_time(bytes.fromhex("2026030110153045")) == datetime(2026, 3, 1, 10, 15, 30, 450000, tzinfo=UTC)
    assert decode_abs_time(b"\xff" * 8) is None
    with pytest.raises(IntellivueDecodeError):
        decode_abs_time(bytes.fromhex("20261a0110153045"))


def test_association_request_matches_the_guide_example() -> None:
    req = association_request(min_poll_ms=125.0)
    assert len(req) == 238 and req[:2] == b"\x0d\xec"  # CN SPDU, 236 bytes follow
    assert req[2:16] == bytes.fromhex("0508130100160102800014020002")
    assert req[16:18] == b"\xc1\xdc"  # presentation PDU of 220 bytes
    user = req[-16 - 72 :-16]
    assert req[-16 - 74 : -16 - 72] == b"\x81\x48"  # octet-aligned user data of 72 bytes
    assert user[:20] == bytes.fromhex("80000000" "40000000" "00000000" "80000000" "20000000")
    assert user[24:28] == bytes.fromhex("0001002c")  # one supported profile, 44 bytes
    assert user[28:32] == bytes.fromhex("00010028")  # NOM_POLL_PROFILE_SUPPORT, 40 bytes
    assert user[36:40] == struct.pack(">I", 1000)  # min poll period 125 ms in 1/8 ms
    assert req[-16:] == bytes(16)


def _sp(ro_type: int, body: bytes) -> bytes:
    return struct.pack(">HHHH", 0xE100, 2, ro_type, len(body)) + body


def _ava(attr: int, value: bytes) -> bytes:
    return struct.pack(">HH", attr, len(value)) + value


def _attrs(*avas: bytes) -> bytes:
    return struct.pack(">HH", len(avas), sum(map(len, avas))) + b"".join(avas)


def _poll_reply(observations: list[bytes], obj: int = 6, linked: int | None = None) -> bytes:
    body = b"".join(observations)
    contexts = struct.pack(">HHH", 0, len(observations), len(body)) + body
    reply = struct.pack(">HHI", 7, 0, 800) + bytes.fromhex("2026030110000000") + \
        struct.pack(">HHH", 1, obj, 0) + struct.pack(">HH", 1, len(contexts)) + contexts
    result = struct.pack(">HHH", 33, 0, 0) + struct.pack(">HH", 61755, len(reply)) + reply
    op = struct.pack(">HHH", 42, 7, len(result)) + result
    if linked is None:
        return _sp(2, op)
    return _sp(5, bytes([linked, 1]) + op)


HR = struct.pack(">H", 10) + _attrs(_ava(0x0950, struct.pack(">HHHI", 0x4182, 0, 0x0AA0, 72)))
SPO2_QUESTIONABLE = struct.pack(">H", 11) + _attrs(
    _ava(0x0950, struct.pack(">HHHI", 0x4BB8, 0x4000, 0x0220, 97)))
TEMP = struct.pack(">H", 12) + _attrs(_ava(0x0950, struct.pack(">HHHI", 0x4B48, 0, 0x17A0, 0xFF000170)))
NBP = struct.pack(">H", 13) + _attrs(_ava(0x094B, struct.pack(">HH", 3, 30) + b"".join(
    struct.pack(">HHHI", p, 0x0080, 0x0F20, v) for p, v in ((0x4A05, 120), (0x4A06, 80), (0x4A07, 93)))))
RR_NAN = struct.pack(">H", 14) + _attrs(_ava(0x0950, struct.pack(">HHHI", 0x500A, 0, 0x0AE0, 0x007FFFFF)))
PLETH = struct.pack(">H", 50) + _attrs(
    _ava(0x096D, struct.pack(">HBBH", 4, 16, 12, 0)),
    _ava(0x096F, struct.pack(">IIHH", 0, 4095, 0, 4095)),
    _ava(0x098D, struct.pack(">I", 64)),  # 8 ms (125 Hz) in 1/8 ms
    _ava(0x096E, struct.pack(">HHH", 0x4BB4, 0, 8) + struct.pack(">4H", 100, 0xF200, 2000, 4095)))


def test_poll_reply_numerics_and_states() -> None:
    msg = decode_message(_poll_reply([HR, SPO2_QUESTIONABLE, TEMP, NBP, RR_NAN]))
    assert isinstance(msg, PollResult)
    assert (msg.invoke_id, msg.poll_number, msg.object_type, msg.relative_time) == (42, 7, 6, 800)
    assert msg.device_time == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    by_id = {nu.physio_id: nu for nu in msg.numerics}
    assert by_id[0x4182].value == 72.0 and by_id[0x4182].valid
    assert by_id[0x4BB8].value == 97.0 and not by_id[0x4BB8].valid
    assert by_id[0x4BB8].state_names == ["questionable"]
    assert by_id[0x4B48].value == 36.8
    assert [by_id[p].value for p in (0x4A05, 0x4A06, 0x4A07)] == [120.0, 80.0, 93.0]
    assert by_id[0x4A05].state_names == ["validated"] and by_id[0x4A05].valid
    assert by_id[0x500A].value is None and by_id[0x500A].special == "NaN"


def test_numerics_to_fhir() -> None:
    poll = decode_message(_poll_reply([HR, SPO2_QUESTIONABLE, TEMP, NBP, RR_NAN]))
    assert isinstance(poll, PollResult)
    mapped = poll_to_fhir(poll, PROFILE, "Device/intellivue-0009fb123456", AT, "Patient/p1")
    assert mapped.problems == []
    obs = {o["code"]["coding"][-1]["code"]: o for o in mapped.resources}
    for o in mapped.resources:
        Observation.model_validate(o)
    hr = obs["4182"]
    assert hr["code"]["coding"][0] == {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}
    assert hr["code"]["coding"][1]["code"] == "147842"
    assert hr["valueQuantity"] == {"value": 72, "unit": "bpm", "system": "http://unitsofmeasure.org", "code": "/min"}
    assert hr["category"][0]["coding"][0]["code"] == "vital-signs"
    assert obs["4b48"]["valueQuantity"]["value"] == 36.8 and obs["4b48"]["valueQuantity"]["code"] == "Cel"
    spo2 = obs["4bb8"]
    assert "valueQuantity" not in spo2 and spo2["dataAbsentReason"]["text"] == "measurement state: questionable"
    assert obs["500a"]["dataAbsentReason"]["text"] == "monitor reported NaN"
    assert obs["4a05"]["valueQuantity"]["value"] == 120
    samples = sample_from_observation(hr)
    assert [(s.param.value, s.value) for s in samples] == [("heart_rate", 72.0)]
    assert sample_from_observation(spo2) == []  # an invalid value never reaches the rules


def test_unknown_codes_and_wrong_units_are_problems() -> None:
    unknown = struct.pack(">H", 20) + _attrs(_ava(0x0950, struct.pack(">HHHI", 0x7777, 0, 0x0AA0, 1)))
    wrong_unit = struct.pack(">H", 21) + _attrs(_ava(0x0950, struct.pack(">HHHI", 0x4182, 0, 0x0220, 72)))
    poll = decode_message(_poll_reply([unknown, wrong_unit, HR]))
    mapped = poll_to_fhir(poll, PROFILE, "Device/d", AT)  # type: ignore[arg-type]
    assert len(mapped.resources) == 1
    assert mapped.problems == ["unknown physio id 0x7777 (handle 20)",
                               "unexpected unit 0x0220 for hr (expected 0x0aa0)"]


def test_wave_reply_scaled_in_bulk_to_sampled_data() -> None:
    poll = decode_message(_poll_reply([PLETH], obj=9, linked=3))
    assert isinstance(poll, PollResult) and poll.last_part and poll.linked == 3
    (wave,) = poll.waves
    assert wave.samples == [100, 0x200, 2000, 4095]  # 12 significant bits: the top nibble is masked
    assert wave.period_ms == 8.0
    mapped = poll_to_fhir(poll, PROFILE, "Device/d", AT, "Patient/p1")
    (obs,) = mapped.resources
    Observation.model_validate(obs)
    assert is_waveform(obs) and obs["code"]["coding"][0]["code"] == "150452"
    assert obs["valueSampledData"]["data"] == "100 512 2000 4095"
    assert str(obs["valueSampledData"]["period"]) == "8.0"
    assert obs["effectivePeriod"]["end"] == AT.isoformat()


# ABP: scaled 0..5600 <-> -40..520 mmHg (0.1 mmHg a step), 13 significant bits
ABP = struct.pack(">H", 52) + _attrs(
    _ava(0x096D, struct.pack(">HBBH", 3, 16, 13, 0)),
    _ava(0x096F, struct.pack(">IIHH", 0xFF000000 | (-400 & 0xFFFFFF), 520, 0, 5600)),  # -40.0, 520
    _ava(0x098D, struct.pack(">I", 64)),
    _ava(0x096E, struct.pack(">HHH", 0x4A14, 0, 6) + struct.pack(">3H", 0, 1600, 5600)))


def test_scaled_wave_keeps_its_integers_with_the_scale_as_origin_and_factor() -> None:
    poll = decode_message(_poll_reply([ABP], obj=9))
    assert isinstance(poll, PollResult)
    (wave,) = poll.waves
    assert wave.samples == [0, 1600, 5600]
    (obs,) = poll_to_fhir(poll, PROFILE, "Device/d", AT).resources
    Observation.model_validate(obs)
    sd = obs["valueSampledData"]
    assert sd["data"] == "0 1600 5600"
    assert sd["origin"]["value"] == -40 and sd["origin"]["code"] == "mm[Hg]" and str(sd["factor"]) == "0.1"
    # physical = origin + factor x sample: -40, 120, 520 mmHg, as the scale specification says
    physical = [sd["origin"]["value"] + float(sd["factor"]) * int(x) for x in sd["data"].split()]
    assert [round(v, 6) for v in physical] == [-40.0, 120.0, 520.0] == [round(v, 6) for v in wave.physical()]


def test_session_messages() -> None:
    assert decode_message(bytes([0x0C, 0x03, 0x11, 0x01, 0x00])) == AssociationResult(
        False, None, "association refused by the monitor")
    assert decode_message(bytes([0x19, 0x00])) == SessionEnd("abort")
    assert decode_message(bytes([0x0A, 0x00])) == SessionEnd("release-response")
    assert decode_message(_sp(3, struct.pack(">HH", 9, 3))) == RemoteError(9, 3)
    user = struct.pack(">IIIII", 0x80000000, 0x40000000, 0, 0x80000000, 0x20000000) + \
        struct.pack(">HH", 0, 0) + _attrs(_ava(1, struct.pack(">II", 0x80000000, 1000) + bytes(16)))
    accept = b"\x0e\x00" + b"\xbe\x80\x28\x80\x02\x01\x02\x81" + bytes([len(user)]) + user + bytes(16)
    accept = accept[:1] + bytes([len(accept) - 2]) + accept[2:]
    result = decode_message(accept)
    assert isinstance(result, AssociationResult) and result.accepted
    assert result.user_info is not None and result.user_info.min_poll_period_ms == 125.0


def test_mds_create_event_and_device() -> None:
    attrs = _attrs(
        _ava(0x0984, struct.pack(">H", 6) + bytes.fromhex("0009fb123456")),
        _ava(0x0928, struct.pack(">H", 24) + b"Philips Medical Systems\x00" + struct.pack(">H", 6) + b"MX800\x00"),
        _ava(0x091E, struct.pack(">H", 8) + "ICU3".encode("utf-16-be")),
        _ava(0x0987, bytes.fromhex("2026030110000000")))
    info = struct.pack(">HHH", 33, 0, 0) + attrs
    arg = struct.pack(">HHH", 33, 0, 0) + struct.pack(">IHH", 0, 3334, len(info)) + info
    msg = decode_message(_sp(1, struct.pack(">HHH", 5, 1, len(arg)) + arg))
    assert isinstance(msg, MdsCreateEvent)
    assert (msg.invoke_id, msg.system_id, msg.manufacturer, msg.model, msg.bed_label) == (
        5, "0009fb123456", "Philips Medical Systems", "MX800", "ICU3")
    device = intellivue_device(msg, PROFILE, "Location/bed-3")
    Device.model_validate(device)
    assert device["id"] == "intellivue-0009fb123456" and device["modelNumber"] == "MX800"
    reply = mds_create_result(msg.invoke_id, msg.managed_object)
    assert reply[:8] == bytes.fromhex("e100000200020014") and reply[8:14] == bytes.fromhex("00050001000e")
    assert reply[-4:] == bytes.fromhex("0d060000")


def test_keep_alive_and_release_encodings() -> None:
    ka = keep_alive_request(3)
    assert ka[4:6] == b"\x00\x01" and ka[8:12] == bytes.fromhex("00030003")  # ROIV, invoke 3, CMD_GET
    assert release_request()[:2] == b"\x09\x18"
    res = struct.pack(">HHH", 33, 0, 0) + _attrs(_ava(0x0987, bytes.fromhex("2026030110000000")))
    got = decode_message(_sp(2, struct.pack(">HHH", 3, 3, len(res)) + res))
    assert got == KeepAliveResult(3, datetime(2026, 3, 1, 10, tzinfo=UTC))


@pytest.mark.parametrize("raw", [
    b"", b"\xe1", b"\x42\x00", b"\x0e\x05\x00",
    _sp(9, b""), _sp(2, struct.pack(">HHH", 1, 99, 0)),
])
def test_malformed_datagrams_raise_with_a_reason(raw: bytes) -> None:
    with pytest.raises(IntellivueDecodeError) as info:
        decode_message(raw)
    assert info.value.reason


def test_every_truncation_is_a_decode_error_never_a_crash() -> None:
    full = _poll_reply([HR, NBP, PLETH])
    for cut in range(len(full)):
        try:
            decode_message(full[:cut])
        except IntellivueDecodeError:
            continue
    # a length field larger than the datagram is caught too
    lying = bytearray(full)
    lying[6:8] = b"\xff\xff"
    with pytest.raises(IntellivueDecodeError, match="claims 65535 bytes"):
        decode_message(bytes(lying))


def test_connect_indication_written_by_hand() -> None:
    net = bytes.fromhex("0009fb000007") + bytes([10, 1, 2, 3]) + bytes([255, 255, 255, 0])
    proto = struct.pack(">HH", 1, 8) + struct.pack(">HHHH", 1, 1, 24105, 0)  # data export over UDP
    info = _attrs(_ava(0x0984, struct.pack(">H", 6) + bytes.fromhex("0009fb000007")),
                  _ava(0xF100, net), _ava(0xF101, proto))
    arg = struct.pack(">HHH", 33, 0, 0) + struct.pack(">IHH", 0, 3351, len(info)) + info
    msg = decode_message(_sp(1, struct.pack(">HHH", 0, 0, len(arg)) + arg))
    assert msg == ConnectIndication("0009fb000007", "10.1.2.3", 24105)
