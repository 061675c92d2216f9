"""PB840/980 decoder: the real captures decode to values read by hand from the sample bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappers.pb840 import VentDecodeError, decode_misca, decode_miscf, decode_response
from mappers.profiles import load_profile

RECEIVED = datetime(2026, 11, 28, 5, 0, 12, tzinfo=UTC)

# shared/samples/pb840/mdpnp-pb840cpp_pb840_MISCF_sample.bin, byte for byte
MISCF_840 = (
    b"MISCF,1225,169 ,\x0214:51 ,840 3510053249    ,NOV 22 2011 ,INVASIVE ,A/C   ,VC    ,     "
    b" ,V-Trig,14.0  ,0.365 ,55.0  ,21    ,      ,5.0   ,0.0   ,20    ,0.500 ,20.0  ,55.0  ,10"
    b"0   ,      ,      ,RAMP  ,VC    ,      ,      ,      ,RAMP  ,OFF   ,50    ,      ,23.000"
    b",4.500 ,1200  ,350   ,1200  ,255   ,40    ,      ,4.5   ,3.0   ,      ,      ,      ,   "
    b"   ,         ,      ,      ,HME               ,      ,Enabled  ,75    ,      ,      ,   "
    b"   ,50.0  ,      ,      ,      ,      ,      ,ADULT    ,      ,      ,24.0  ,14.0  ,0.37"
    b"8 ,5.290 ,24.0  ,8.6   ,5.00  ,1:5.00,20    ,      ,      ,      ,      ,      ,      , "
    b"     ,      ,      ,5.8   ,      ,      ,0.0   ,0.0   ,0.0   ,0.0   ,0.0   ,      ,20.0 "
    b" ,5.1   ,      ,101.0 ,0.0   ,      ,0.0   ,0.0   ,0.000 ,OFF   ,NORMAL,NORMAL,NORMAL,NO"
    b"RMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,RESET ,NORMAL,NORMAL,NORMAL"
    b",NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NOR"
    b"MAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,"
    b"NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,      ,      ,      ,      ,      ,    "
    b"  ,      ,      ,      ,      ,      ,      ,      ,      ,      ,      ,      ,      , "
    b"     ,      ,\x03\r"
)
# shared/samples/pb840/pb980_MISCF_real.bin, byte for byte
MISCF_980 = (
    b"MISCF,1225,169 ,\x0210:40 ,980 35B1500404    ,APR 24 2023 ,INVASIVE ,SIMV  ,VC    ,PS   "
    b" ,V-Trig,15.0  ,0.245 ,27.0  ,40    ,      ,5.0   ,0.0   ,20    ,0.365 ,10.0  ,53.0  ,10"
    b"0   ,      ,      ,RAMP  ,VC    ,      ,      ,10    ,SQUARE,OFF   ,47    ,      ,18.500"
    b",2.500 ,480   ,150   ,480   ,255   ,OFF   ,      ,3.5   ,2.0   ,      ,      ,      ,   "
    b"   ,         ,      ,      ,HME               ,      ,Disabled ,75    ,70    ,      ,25."
    b"0  ,61.0  ,      ,      ,      ,      ,      ,ADULT    ,      ,      ,16.0  ,15.0  ,0.25"
    b"2 ,3.780 ,16.0  ,6.4   ,6.40  ,1:6.40,      ,0.115 ,      ,      ,      ,      ,      , "
    b"     ,      ,      ,5.0   ,0.35  ,0.00  ,0.0   ,0.0   ,28.0  ,4.8   ,14.0  ,      ,28.0 "
    b" ,4.9   ,26.0  ,42.0  ,0.0   ,      ,0.0   ,0.0   ,0.000 ,OFF   ,NORMAL,NORMAL,NORMAL,NO"
    b"RMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,RESET ,NORMAL,NORMAL,NORMAL,NORMAL"
    b",NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NOR"
    b"MAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,      ,"
    b"      ,      ,      ,      ,      ,      ,      ,0.045 ,      ,OFF   ,      ,      ,    "
    b"  ,NORMAL,      ,      ,0.400 ,1.900 ,      ,      ,      ,      ,      ,      ,      ,B"
    b"REATH,      ,\x03\r"
)
# shared/samples/pb840/mdpnp-pb840cpp_pb840_MISCA_sample.bin, byte for byte
MISCA_840 = (
    b"MISCA,706,97,\x0214:47 ,840 3510053249    ,      ,NOV 22 2011 ,CMV   ,14.0  ,0.36  ,55  "
    b"  ,21    ,0.0   ,5.0   ,0.0   ,      ,      ,      ,      ,20    ,0.50  ,20.0  ,55    ,1"
    b"00   ,0     ,RAMP  ,      ,      ,OFF   ,      ,      ,      ,14    ,0.38  ,5.29  ,0.0  "
    b" ,24.0  ,8.6   ,24.0  ,5.00  ,50    ,      ,      ,0.35  ,4.5   ,40    ,NORMAL,      ,  "
    b"    ,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,NORMAL,      ,      ,14:47 ,      ,NOV 22"
    b" 2011 ,0.0   ,0.0   ,20.0  ,5.10  ,0     ,0.000 ,0     ,4     ,3     ,      ,      ,    "
    b"  ,      ,      ,      ,      ,      ,      ,      ,      ,NOOP C,24.00 ,0     ,0.00  ,2"
    b"0    ,0     ,20.0  ,0.00  ,100   ,50    ,OFF   ,NORMAL,NORMAL,0.00  ,0.00  ,0.00  ,0.00 "
    b" ,         ,1:5.00,\x03\r"
)


def pb840():
    return load_profile("medtronic-pb840")


def pb980():
    return load_profile("medtronic-pb980")


def with_field(frame: bytes, number: int, text: str) -> bytes:
    """Replace field ``number`` (manual numbering) keeping its width and the counts valid."""
    stx, etx = frame.index(b"\x02"), frame.index(b"\x03")
    fields = frame[stx + 1 : etx].decode("ascii").split(",")
    width = len(fields[number - 5])
    fields[number - 5] = text.ljust(width)[: max(width, len(text))]
    body = ",".join(fields).encode("latin-1")
    head = frame[:stx].split(b",")
    head[1] = str(len(body)).encode()
    return b",".join(head) + b"\x02" + body + b"\x03\r"


def q(record, key):
    v = record.value(key)
    assert v is not None, key
    return v.value


# -- the three real captures -----------------------------------------------------------


def test_840_miscf_identity_and_mode():
    r = decode_miscf(MISCF_840, pb840(), received_at=RECEIVED, device_id=None)
    assert (r.record_type, r.model, r.serial) == ("MISCF", "840", "3510053249")
    assert r.device_id == "medtronic-840-3510053249"
    assert (r.vent_time, r.vent_date) == ("14:51", "NOV 22 2011")
    assert r.received_at == RECEIVED
    assert r.mode.parts == ("A/C", "VC", "")
    assert r.mode.composed == "A/C VC"
    assert r.mode.name == "A/C VC (volume control)"
    assert r.field(8) == "INVASIVE"
    assert len(r.fields) == 169


def test_840_miscf_values_converted_to_ucum():
    r = decode_miscf(MISCF_840, pb840(), received_at=RECEIVED)
    assert q(r, "set_rr") == Decimal("14")
    assert q(r, "set_vt") == Decimal("365")  # 0.365 L
    assert r.value("set_vt").unit == "mL"
    assert q(r, "set_peak_flow") == Decimal("55")
    assert q(r, "set_o2") == Decimal("21")
    assert q(r, "set_psens") is None  # blank
    assert q(r, "set_peep") == Decimal("5")
    assert q(r, "ftot") == Decimal("14")
    assert r.value("ftot").unit == "/min"
    assert q(r, "vte") == Decimal("378")  # 0.378 L
    assert q(r, "ve_tot") == Decimal("5.29")
    assert r.value("ve_tot").unit == "L/min"
    assert q(r, "ppeak") == Decimal("24")
    assert r.value("ppeak").unit == "cm[H2O]"
    assert q(r, "pmean") == Decimal("8.6")
    assert q(r, "ie_ratio") == "1:5.00"
    assert q(r, "o2_delivered") == Decimal("20")
    assert q(r, "peep") == Decimal("5.8")
    assert q(r, "cdyn") == Decimal("20")
    assert q(r, "rdyn") == Decimal("5.1")
    assert q(r, "pef") == Decimal("101")
    assert q(r, "psf") is None
    assert q(r, "lim_ppeak_high") == Decimal("50")
    assert q(r, "lim_ve_high") == Decimal("23")
    assert q(r, "lim_ve_low") == Decimal("4.5")
    assert q(r, "lim_vte_high") == Decimal("1200")
    assert q(r, "lim_ftot_high") == Decimal("40")
    assert q(r, "alarm_silence") == "OFF"
    assert all(v.valid for v in r.values)


def test_840_miscf_alarm_fields():
    r = decode_miscf(MISCF_840, pb840(), received_at=RECEIVED)
    assert len(r.alarms) == 48  # fields 106..153
    states = {a.field: a.state for a in r.alarms}
    assert states[118] == "RESET"  # low exhaled minute volume, reset
    assert states[110] == "NORMAL"
    assert states[124] == "NORMAL"
    assert r.active_alarms == ()


def test_980_miscf_real_capture():
    r = decode_miscf(MISCF_980, pb980(), received_at=RECEIVED)
    assert (r.model, r.serial) == ("980", "35B1500404")
    assert (r.vent_time, r.vent_date) == ("10:40", "APR 24 2023")
    assert r.mode.parts == ("SIMV", "VC", "PS")
    assert r.mode.name == "SIMV VC with pressure support"
    assert q(r, "set_rr") == Decimal("15")
    assert q(r, "set_vt") == Decimal("245")
    assert q(r, "set_o2") == Decimal("40")
    assert q(r, "set_ps") == Decimal("10")
    assert q(r, "ibw") == Decimal("61")
    assert q(r, "ftot") == Decimal("15")
    assert q(r, "vte") == Decimal("252")
    assert q(r, "ve_tot") == Decimal("3.78")
    assert q(r, "ppeak") == Decimal("16")
    assert q(r, "pmean") == Decimal("6.4")
    assert q(r, "ie_ratio") == "1:6.40"
    assert q(r, "o2_delivered") is None
    assert q(r, "vti") == Decimal("115")
    assert q(r, "peep") == Decimal("5")
    assert q(r, "cstat") == Decimal("28")
    assert q(r, "rstat") == Decimal("4.8")
    assert q(r, "pplat") == Decimal("14")
    assert q(r, "psf") == Decimal("26")
    assert q(r, "pef") == Decimal("42")
    assert q(r, "vte_spont") == Decimal("45")
    assert q(r, "lim_ftot_high") is None  # OFF
    assert q(r, "lim_ve_low") == Decimal("2.5")
    assert q(r, "etco2") is None  # field 161 blank in this capture
    states = {a.field: a.state for a in r.alarms}
    assert states[117] == "RESET"
    assert 153 not in states  # blank on this 980
    assert len(r.alarms) == 40  # 106..145 reported, 146..153 blank
    assert r.active_alarms == ()


def test_840_misca_legacy_set():
    r = decode_misca(MISCA_840, pb840(), received_at=RECEIVED)
    assert r.record_type == "MISCA"
    assert (r.model, r.serial) == ("840", "3510053249")
    assert (r.vent_time, r.vent_date) == ("14:47", "NOV 22 2011")
    assert r.mode.parts == ("CMV",)
    assert r.mode.name == "A/C (CMV)"
    assert q(r, "a_set_rr") == Decimal("14")
    assert q(r, "a_set_vt") == Decimal("360")  # 0.36 L
    assert q(r, "a_set_o2") == Decimal("21")
    assert q(r, "a_set_peep") == Decimal("5")
    assert q(r, "a_ftot") == Decimal("14")
    assert q(r, "a_vte") == Decimal("380")
    assert q(r, "a_ve_tot") == Decimal("5.29")
    assert q(r, "a_ppeak") == Decimal("24")
    assert q(r, "a_pmean") == Decimal("8.6")
    assert q(r, "a_pi_end") == Decimal("24")
    assert q(r, "a_lim_ppeak_high") == Decimal("50")
    assert q(r, "a_cdyn") == Decimal("20")
    assert q(r, "a_rdyn") == Decimal("5.1")
    assert q(r, "a_ie_ratio") == "1:5.00"
    assert {a.field for a in r.alarms} == {48, 51, 52, 53, 54, 55, 57, 94, 95}
    assert r.active_alarms == ()


def test_decode_response_dispatches_on_header():
    assert decode_response(MISCA_840, pb840(), received_at=RECEIVED).record_type == "MISCA"
    assert decode_response(MISCF_840, pb840(), received_at=RECEIVED).record_type == "MISCF"


def test_explicit_device_id_wins():
    r = decode_miscf(MISCF_840, pb840(), received_at=RECEIVED, device_id="bed-7-vent")
    assert r.device_id == "bed-7-vent"


def test_naive_receipt_time_refused():
    with pytest.raises(ValueError, match="timezone"):
        decode_miscf(MISCF_840, pb840(), received_at=datetime(2026, 1, 1))  # noqa: DTZ001


def test_implausible_value_is_flagged_not_dropped():
    r = decode_miscf(with_field(MISCF_840, 70, "999.0"), pb840(), received_at=RECEIVED)
    v = r.value("ftot")
    assert v.value == Decimal("999") and v.valid is False


def test_active_alarm():
    r = decode_miscf(with_field(MISCF_840, 124, "HIGH"), pb840(), received_at=RECEIVED)
    assert [(a.field, a.state) for a in r.active_alarms] == [(124, "HIGH")]


# -- malformed input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (MISCF_840.replace(b"MISCF,1225,", b"MISCF,1224,", 1), "byte count mismatch"),
        (MISCF_840.replace(b",169 ,", b",168 ,", 1), "field count mismatch"),
        (MISCF_840[:-60], "no ETX"),
        (MISCF_840.replace(b"\x02", b"", 1), "no STX"),
        (MISCF_840[:-1], "end with ETX CR"),
        (MISCF_840 + b"X", "end with ETX CR"),
        (b"MISCQ,1225,169 ," + MISCF_840[16:], "not in profile"),
        (b"HELLO" + MISCF_840, "malformed header"),
        (MISCF_840.replace(b"14:51 ", b"14:5\xff ", 1), "invalid byte 0xff"),
        (MISCF_840.replace(b"14:51 ", b"14:5\x00 ", 1), "invalid byte 0x00"),
        (MISCF_840[:-3] + b"X\x03\r", "not followed by a comma"),
    ],
)
def test_framing_errors_have_reasons(frame, reason):
    with pytest.raises(VentDecodeError, match=reason):
        decode_response(frame, pb840(), received_at=RECEIVED)


@pytest.mark.parametrize(
    ("field", "text", "reason"),
    [
        (70, "ABC", "field 70 .*not a number"),
        (70, "nan", "field 70 .*not a number"),
        (73, "1e5", "field 73 .*not a number"),
        (110, "PURPLE", "field 110 .*unknown alarm state"),
        (9, "XYZ", "field 9 .*unknown value"),
        (6, "840", "vent ID"),
        (6, "840 35-10053", "not alphanumeric"),
    ],
)
def test_unknown_field_values(field, text, reason):
    with pytest.raises(VentDecodeError, match=reason):
        decode_miscf(with_field(MISCF_840, field, text), pb840(), received_at=RECEIVED)


def test_wrong_model_for_profile():
    with pytest.raises(VentDecodeError, match="model 980"):
        decode_miscf(MISCF_980, pb840(), received_at=RECEIVED)


def test_expected_record_type():
    with pytest.raises(VentDecodeError, match="expected a MISCF"):
        decode_miscf(MISCA_840, pb840(), received_at=RECEIVED)


def test_field_count_not_in_profile():
    stx = MISCF_840.index(b"\x02")
    body = MISCF_840[stx + 1 : -2] + b"      ,"
    frame = b"MISCF,%d,170 ," % len(body) + b"\x02" + body + b"\x03\r"
    with pytest.raises(VentDecodeError, match=r"expects \[169\]"):
        decode_miscf(frame, pb840(), received_at=RECEIVED)


def test_oversized_response():
    with pytest.raises(VentDecodeError, match="exceeds"):
        decode_response(b"M" * 70_000, pb840(), received_at=RECEIVED)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_crash(data):
    try:
        decode_response(data, pb840(), received_at=RECEIVED)
    except VentDecodeError as exc:
        assert exc.reason


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([MISCF_840, MISCA_840]),
    st.integers(min_value=0, max_value=1243),
    st.integers(min_value=0, max_value=255),
    st.booleans(),
)
def test_mutated_frames_decode_or_raise_decode_error(frame, pos, byte, truncate):
    pos = min(pos, len(frame) - 1)
    mutated = frame[:pos] if truncate else frame[:pos] + bytes([byte]) + frame[pos + 1 :]
    try:
        decode_response(mutated, pb840(), received_at=RECEIVED)
    except VentDecodeError as exc:
        assert exc.reason
