"""ACK building (original and enhanced mode), ERR escaping, and the lenient MSH reader.

Every ACK is also parsed by hl7apy (tests only) to show a third-party parser accepts it.
"""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hl7apy.parser import parse_message
from hypothesis import given, settings
from hypothesis import strategies as st

from mappers.hl7v2 import (
    HL7Error,
    accept_ack_code,
    app_ack_code,
    build_ack,
    parse,
    read_header,
    read_header_lenient,
    unescape,
)

SAMPLES = Path("/work/shared/samples/hl7v2")
NOW = datetime(2026, 11, 28, 5, 0, 0, tzinfo=UTC)


def header(name: str):
    return read_header(parse((SAMPLES / name).read_bytes()))


def test_original_mode_aa_for_pcd01() -> None:
    h = header("ihe-pcd-tf2-rev8_pcd01-philips-monitor_ORU_R01.hl7")
    ack = build_ack(h, "AA", now=NOW, control_id="ACK1")
    msg = parse(ack)
    msh = msg.msh
    assert msh[3] == "" and msh[5] == "PAT_DEVICE_PHILIPS_C" and msh[6] == "Philips"
    assert msh[7] == "20261128050000+0000" and msh[9] == "ACK^R01^ACK" and msh[10] == "ACK1"
    assert msh[11] == "P" and msh[12] == "2.6" and msh[18] == "8859/1"
    assert msg.segment("MSA").fields == ["MSA", "AA", "HP0122182658686QQ000CND119C0WS61"]
    assert msg.segment("ERR") is None
    assert ack.endswith(b"\r") and b"\n" not in ack
    apy = parse_message(ack.decode("latin-1"))
    assert apy.msa.msa_1.value == "AA"
    assert apy.msa.msa_2.value == "HP0122182658686QQ000CND119C0WS61"


def test_ae_err_segment_is_escaped() -> None:
    h = header("ihe-pcd-tf2-rev8_ws-wrapped-bp-cuff_ORU_R01.hl7")
    detail = "bad value | in ^ field & sub ~ rep \\ esc\nline2"
    ack = build_ack(h, "AE", error=HL7Error(102, detail, "OBX^3^5"), now=NOW, control_id="9")
    err = parse(ack).segment("ERR")
    assert err is not None
    assert err[1] == "" and err[2] == "OBX^3^5"
    assert err[3] == "102^Data type error^HL70357" and err[4] == "E"
    assert err[8] == "bad value \\F\\ in \\S\\ field \\T\\ sub \\R\\ rep \\E\\ esc\\.br\\line2"
    assert unescape(err[8]) == detail.replace("\n", "\n")
    apy = parse_message(ack.decode())
    assert apy.msa.msa_1.value == "AE" and apy.msa.msa_2.value == "MSGID1234"
    assert apy.err.err_3.to_er7() == "102^Data type error^HL70357"


def test_ar_v24_uses_err1_and_msa3() -> None:
    h = header("philips-efficia-cm_ORU_R01_MDIL.hl7")
    error = HL7Error(202, "processing id 'T' not accepted", "MSH^1^11")
    msg = parse(build_ack(h, "AR", error=error, now=NOW, control_id="7"))
    assert msg.msh[9] == "ACK^R01^ACK" and msg.msh[12] == "2.4" and msg.msh[5] == "^EfficiaCM"
    assert msg.segment("MSA").fields == ["MSA", "AR", "CN92390246", "processing id 'T' not accepted"]
    assert msg.segment("ERR").fields == ["ERR", "MSH^1^11^202&Unsupported processing id&HL70357"]
    parse_message(build_ack(h, "AR", error=error, now=NOW, control_id="7").decode())


def test_v22_ack_has_two_part_message_type() -> None:
    h = header("piic_center-doc-sample_ORU_R01_MDIL.hl7")
    msg = parse(build_ack(h, "AA", now=NOW, control_id="1"))
    assert msg.msh[9] == "ACK^R01" and msg.msh[12] == "2.2"


def test_rejects_get_fatal_severity_and_default_error() -> None:
    h = header("ihe-pcd-tf2-rev8_pcd01-episodic-nibp_ORU_R01.hl7")
    err = parse(build_ack(h, "CR", now=NOW, control_id="1")).segment("ERR")
    assert err is not None and err[3] == "207^Application internal error^HL70357" and err[4] == "F"


@pytest.mark.parametrize("code", ["CA", "CE", "CR"])
def test_enhanced_mode_codes(code: str) -> None:
    h = header("ihe-pcd-tf2-rev8_pcd01-episodic-nibp_ORU_R01.hl7")
    ack = build_ack(h, code, now=NOW, control_id="X1")
    msg = parse(ack)
    assert msg.segment("MSA")[1] == code and msg.segment("MSA")[2] == "0104ef190d604db188c3"
    assert (msg.segment("ERR") is None) == (code == "CA")
    assert msg.msh[5] == "ACME_Gateway^080019FFFE3ED02D^EUI-64" and msg.msh[6] == "ACME Healthcare"
    assert parse_message(ack.decode()).msa.msa_1.value == code


def test_custom_separators_are_echoed() -> None:
    h = header("python-hl7_test_parse_nonstandard-separators.hl7")
    ack = build_ack(h, "AE", error=HL7Error(207, "a$b%c", "PID^1^5"), now=NOW, control_id="1")
    assert ack.startswith(b"MSH$%~\\&$$$GHH LAB$")
    err = parse(ack).segment("ERR")
    assert err is not None and err[2] == "PID%1%5" and err[8] == "a\\F\\b\\S\\c"


def test_truncation_character_is_echoed_and_escaped() -> None:
    h = header("hl7apy_test_parser_v27-truncation-char_RSP_K22.hl7")
    ack = build_ack(h, "AE", error=HL7Error(207, "x#y"), now=NOW, control_id="1")
    msg = parse(ack)
    assert msg.msh[2] == "^~\\&#" and msg.segment("ERR")[8] == "x\\P\\y"
    assert msg.msh[9] == "ACK^K22^ACK" and msg.msh[11] == "D"


def test_latin1_inbound_gets_latin1_ack() -> None:
    h = header("piic_center-doc-sample_ORU_R01_MDIL.hl7")
    ack = build_ack(h, "AE", error=HL7Error(207, "Müller"), now=NOW, control_id="1")
    assert "Müller".encode("latin-1") in ack


def test_invalid_arguments() -> None:
    h = header("piic_center-doc-sample_ORU_R01_MDIL.hl7")
    with pytest.raises(ValueError):
        build_ack(h, "OK", now=NOW, control_id="1")
    with pytest.raises(ValueError):
        build_ack(h, "AA", now=datetime(2026, 1, 1), control_id="1")  # noqa: DTZ001


def test_ack_code_rules() -> None:
    original = header("philips-efficia-cm_ORU_R01_MDIL.hl7")
    assert [accept_ack_code(original, o) for o in ("accept", "error", "reject")] == [
        "AA", "AE", "AR"]
    assert app_ack_code(original, "accept") is None
    pcd01 = header("ihe-pcd-tf2-rev8_pcd01-episodic-nibp_ORU_R01.hl7")  # MSH-15 AL, MSH-16 NE
    assert [accept_ack_code(pcd01, o) for o in ("accept", "error", "reject")] == [
        "CA", "CE", "CR"]
    assert app_ack_code(pcd01, "accept") is None
    cuff = header("ihe-pcd-tf2-rev8_ws-wrapped-bp-cuff_ORU_R01.hl7")  # MSH-15 NE, MSH-16 AL
    assert accept_ack_code(cuff, "accept") is None
    assert app_ack_code(cuff, "accept") == "AA" and app_ack_code(cuff, "error") == "AE"
    pcd03 = header("ihe-pcd-tf2-rev8_pcd03-dopamine_RGV_O15.hl7")  # MSH-15 AL, MSH-16 ER
    assert app_ack_code(pcd03, "accept") is None and app_ack_code(pcd03, "reject") == "AR"


def test_lenient_header_from_broken_message() -> None:
    data = (SAMPLES / "philips-efficia-cm_ORU_R01_MDIL.hl7").read_bytes().replace(b"PID", b"p!d")
    h = read_header_lenient(b"garbage\x00" + data)
    assert h is not None and h.control_id == "CN92390246" and h.version == "2.4"
    assert h.message_type == "ORU" and h.trigger_event == "R01"
    ack = parse(build_ack(h, "AR", error=HL7Error(100, "bad segment"), now=NOW, control_id="1"))
    assert ack.segment("MSA")[2] == "CN92390246"


def test_lenient_header_without_msh() -> None:
    assert read_header_lenient(b"PID|1|2\r") is None
    assert read_header_lenient(b"MSH") is None
    h = read_header_lenient(b"MSH|^^^^|APP|FAC||||||CTRL\r")
    assert h is not None and h.sending_app == "APP" and h.control_id == "CTRL"


@settings(max_examples=300)
@given(st.binary(max_size=200), st.sampled_from(["AA", "AE", "AR", "CA", "CE", "CR"]))
def test_lenient_header_and_ack_never_crash(data: bytes, code: str) -> None:
    h = read_header_lenient(data)
    if h is not None:
        assert parse(build_ack(h, code, now=NOW, control_id="1"), errors="replace").msh[9][:3] == "ACK"


def test_lenient_header_with_bare_msh_line() -> None:
    assert read_header_lenient(b"MSH\rPID|1\r") is None


def test_ack_time_follows_every_call_despite_the_per_second_memo() -> None:
    """The ACK keeps the last second's MSH-7 text: the same instant in another zone, the next
    second and a DST fold must each get their own text."""
    from datetime import timedelta, timezone
    from zoneinfo import ZoneInfo

    h = header("ihe-pcd-tf2-rev8_pcd01-philips-monitor_ORU_R01.hl7")

    def msh7(now: datetime) -> str:
        return parse(build_ack(h, "AA", now=now, control_id="C1")).msh[7]

    plus2 = NOW.replace(tzinfo=timezone(timedelta(hours=2)))  # the same wall clock, another zone
    assert [msh7(NOW), msh7(NOW.replace(microsecond=999)), msh7(plus2), msh7(NOW + timedelta(seconds=1))] == [
        "20261128050000+0000", "20261128050000+0000", "20261128050000+0200", "20261128050001+0000"]
    berlin = ZoneInfo("Europe/Berlin")  # 2026-10-25 02:30 happens twice
    first, second = (datetime(2026, 10, 25, 2, 30, tzinfo=berlin, fold=f) for f in (0, 1))
    assert [msh7(first), msh7(second)] == ["20261025023000+0200", "20261025023000+0100"]


def test_control_ids_are_escaped_in_the_ack_only_when_needed() -> None:
    h = header("ihe-pcd-tf2-rev8_pcd01-philips-monitor_ORU_R01.hl7")
    assert parse(build_ack(h, "AA", now=NOW, control_id="abc123")).msh[10] == "abc123"
    assert parse(build_ack(h, "AA", now=NOW, control_id="a^b|c")).msh[10] == "a\\S\\b\\F\\c"
