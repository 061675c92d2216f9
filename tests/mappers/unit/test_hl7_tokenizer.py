"""Tokenizer, escapes and charsets, with expected values read by hand from the samples."""

from pathlib import Path

import pytest

from mappers.hl7v2 import Encoding, HL7ParseError, escape, parse, parse_batch, unescape

SAMPLES = Path("/work/shared/samples/hl7v2")


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_field_numbering_follows_hl7() -> None:
    msg = parse(sample("python-hl7_sample_hl7_ORU_R01.hl7"))
    msh = msg.msh
    assert msh[0] == "MSH" and msh[1] == "|" and msh[2] == "^~\\&"
    assert msh[3] == "GHH LAB" and msh[9] == "ORU^R01" and msh[10] == "CNTRL-3456"
    assert msh.get(9, 2) == "R01" and msh[12] == "2.4"
    assert [s.name for s in msg] == ["MSH", "PID", "OBR", "OBX", "OBX"]
    pid = msg.segment("PID")
    assert pid is not None and pid[3] == "555-44-4444"
    assert pid.get(5, 2) == "EVE" and pid.get(11, 3) == "STATESVILLE"
    assert pid[99] == "" and pid.get(5, 9) == ""


def test_repetitions_components_subcomponents() -> None:
    msg = parse(sample("python-hl7_rep_sample_repetition-subcomponents.hl7"))
    pid = msg.all("PID")[0]
    assert pid[1] == "Field1"
    assert pid.components(2) == ["Component1", "Component2"]
    assert pid.get(3, 2) == "Sub-Component1&Sub-Component2"
    assert pid.get(3, 2, 2) == "Sub-Component2" and pid.get(3, 3) == "Component3"
    assert pid.repetitions(4) == ["Repeat1", "Repeat2"]
    assert pid.get(4, rep=2) == "Repeat2" and pid.get(4, rep=3) == ""


def test_nulls_and_trailing_empty_fields_are_kept() -> None:
    msg = parse(sample("python-hl7_sample_msh_ADT_A01_nulls-repetitions.hl7"))
    pv1 = msg.segment("PV1")
    assert pv1 is not None and pv1[9] == '""' and pv1[19] == "01"
    in1 = msg.all("IN1")[0]
    assert in1[5] == 'PO BOX 223^""^NEW YORK^NY^10116^US^^^""' and in1.get(5, 2) == '""'
    pid = msg.segment("PID")
    assert pid is not None and pid.repetitions(3)[1] == "162840^^^MSH_EMPI^CM"
    assert parse("MSH|^~\\&|A||||||ADT^A01|1|P|2.5\rZZ1|a||\r").segments[1].fields == [
        "ZZ1", "a", "", ""]


def test_custom_separators() -> None:
    msg = parse(sample("python-hl7_test_parse_nonstandard-separators.hl7"))
    assert msg.enc == Encoding("$", "%", "~", "\\", "&")
    pid = msg.segment("PID")
    assert pid is not None and pid[3] == "555-44-4444" and pid.get(5, 2) == "EVE"
    assert msg.msh[1] == "$" and msg.msh[3] == "GHH LAB"


def test_v27_truncation_character() -> None:
    msg = parse(sample("hl7apy_test_parser_v27-truncation-char_RSP_K22.hl7"))
    assert msg.enc.truncation == "#" and msg.msh[2] == "^~\\&#"
    assert msg.msh[9] == "RSP^K22^RSP_K21" and msg.msh[12] == "2.7"
    qpd = msg.segment("QPD")
    assert qpd is not None and qpd.repetitions(3) == ["@PID.3.1^1010110909194822", "@PID.5.1^SMITH"]
    pid = msg.segment("PID")
    assert pid is not None and pid.get(3, 4, 2) == "1.3.6.1.4.1.21367.2011.2.5.17"
    assert unescape("a\\P\\b", msg.enc) == "a#b"


@pytest.mark.parametrize("end", ["\r", "\n", "\r\n"])
def test_segment_terminators(end: str) -> None:
    text = sample("ihe-pcd-tf2-rev8_ws-wrapped-bp-cuff_ORU_R01.hl7").decode().replace("\r", end)
    msg = parse(text)
    assert [s.name for s in msg] == ["MSH", "PID", "OBR", "OBX", "OBX", "OBX", "OBX", "OBX"]
    assert msg.all("OBX")[4][5] == "100"


def test_z_segments_and_blank_lines() -> None:
    msg = parse("\r\nMSH|^~\\&|A||||||ORU^R01|1|P|2.5\r\r\nZVG|1|x^y\n\n")
    assert [s.name for s in msg] == ["MSH", "ZVG"] and msg.segments[1].get(2, 2) == "y"


def test_fhs_bhs_batch() -> None:
    messages = parse_batch(sample("python-hl7_sample_file_FHS-BHS-batch_ADT_A04.hl7"))
    assert len(messages) == 1
    msg = messages[0]
    assert [s.name for s in msg] == ["MSH", "EVN", "PID", "PD1", "NK1", "PV1"]
    assert msg.msh[9] == "ADT^A04^ADT_A01" and msg.msh[10] == "12334456778890"


def test_batch_of_several_messages() -> None:
    one = sample("philips-efficia-cm_ORU_R01_MDIL.hl7")
    two = sample("piic_center-doc-sample_ORU_R01_MDIL.hl7")
    messages = parse_batch(b"BHS|^~\\&\r" + one + two + b"BTS|2\r")
    assert [m.msh[10] for m in messages] == ["CN92390246", "HP104220879017992"]


def test_bad_batch_without_msh_is_rejected() -> None:
    with pytest.raises(HL7ParseError) as info:
        parse_batch(sample("python-hl7_sample_bad_batch_missing-MSH.hl7"))
    assert info.value.code == 100 and info.value.location == "EVN^1"
    with pytest.raises(HL7ParseError):
        parse(sample("python-hl7_sample_bad_batch_missing-MSH.hl7"))


@pytest.mark.parametrize("data", [b"", b"PID|1", b"MSH", b"MSH|^~", b"MSH|^^\\&|x",
                                  b"MSHa^~\\&|x", b"MSH|^~\\&|A\rpid|1", b"MSH|^~\\&|A\rPI|1"])
def test_malformed_input_raises_parse_error(data: bytes) -> None:
    with pytest.raises(HL7ParseError):
        parse(data)


def test_latin1_charset_from_msh18() -> None:
    raw = "MSH|^~\\&|||||||ORU^R01|1|P|2.2||||||8859/1\rPID|||1||Müller^Jörg\r"
    msg = parse(raw.encode("latin-1"))
    pid = msg.segment("PID")
    assert pid is not None and pid.get(5, 1) == "Müller" and pid.get(5, 2) == "Jörg"


def test_utf8_default_and_invalid_bytes() -> None:
    raw = "MSH|^~\\&|||||||ORU^R01|1|P|2.6||||||UNICODE UTF-8\rPID|||1||Łukasz\r"
    assert parse(raw.encode()).all("PID")[0].get(5, 1) == "Łukasz"
    bad = b"MSH|^~\\&|||||||ORU^R01|1|P|2.6\rPID|||1||Bad\xff\xfe\r"
    with pytest.raises(HL7ParseError) as info:
        parse(bad)
    assert info.value.code == 102
    assert parse(bad, errors="replace").all("PID")[0].get(5, 1) == "Bad\ufffd\ufffd"


def test_unknown_charset_is_table_value_error() -> None:
    with pytest.raises(HL7ParseError) as info:
        parse(b"MSH|^~\\&|||||||ORU^R01|1|P|2.6||||||KLINGON\rPID|||\xe9\r")
    assert info.value.code == 103 and info.value.location == "MSH^1^18"


def test_unescape_all_sequences() -> None:
    enc = Encoding()
    assert unescape(r"a\F\b\S\c\T\d\R\e\E\f", enc) == "a|b^c&d~e\\f"
    assert unescape(r"line1\.br\line2", enc) == "line1\nline2"
    assert unescape("\\X41C3A9\\", enc) == "Aé"
    assert unescape("\\H\\bold\\N\\", enc) == "bold"
    assert unescape(r"keep \Z99\ and \unterminated", enc) == r"keep \Z99\ and \unterminated"
    custom = Encoding("$", "%", "~", "!", "&")
    assert unescape("a!F!b!S!c", custom) == "a$b%c"


def test_escape_round_trip() -> None:
    enc = Encoding()
    text = "a|b^c&d~e\\f\r\ng\nh"
    assert escape(text, enc) == r"a\F\b\S\c\T\d\R\e\E\f\.br\g\.br\h"
    assert unescape(escape("x|y^z&\\~", enc), enc) == "x|y^z&\\~"


def test_value_unescapes_component() -> None:
    msg = parse("MSH|^~\\&|||||||ORU^R01|1|P|2.5\rOBX|1|ST|x^y||a\\S\\b^c\r")
    obx = msg.segment("OBX")
    assert obx is not None and obx.get(5, 1) == "a\\S\\b" and obx.value(5, 1) == "a^b"


def test_segment_repr_is_the_segment_text() -> None:
    msg = parse("MSH|^~\\&|A||||||ORU^R01|1|P|2.5\rPID|1||x^y\r")
    assert repr(msg.msh) == "Segment('MSH|^~\\\\&|A||||||ORU^R01|1|P|2.5')"
    assert repr(msg.segments[1]) == "Segment('PID|1||x^y')"
