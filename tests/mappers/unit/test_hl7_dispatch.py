"""Acceptance checks and dispatch: refusals carry the table 0357 code an AR needs."""

from pathlib import Path

import pytest

import mappers.hl7v2 as hl7v2
from mappers.hl7v2 import (
    REJECT_CODES,
    HL7Error,
    MappingContext,
    check_acceptable,
    map_message,
    parse,
    read_header,
)

SAMPLES = Path("/work/shared/samples/hl7v2")


def refusal(name: str) -> tuple[int, str | None]:
    with pytest.raises(HL7Error) as info:
        map_message(parse((SAMPLES / name).read_bytes()), MappingContext())
    return info.value.code, info.value.location


@pytest.mark.parametrize(("name", "code"), [
    ("ihe-pcd-tf2-rev8_pcd03-dopamine_RGV_O15.hl7", 200),
    ("ihe-pcd-tf2-rev8_pcd03-saline_RGV_O15.hl7", 200),
    ("ihe-pcd-tf2-rev8_pcd03-accept-ack-CA_ACK_O15.hl7", 200),
    ("ihe-pcd-tf2-rev8_pcd03-app-ack-AR-with-ERR_RRG_O16.hl7", 200),
    ("ihe-pcd-tf2-rev8_ws-wrapped-ACK-AA.hl7", 200),
    ("piic_demo-alert-setting_ORU_R01_MDIL.hl7", 202),  # processing id T
    ("hl7apy_test_parser_v27-truncation-char_RSP_K22.hl7", 202),  # processing id D
    ("python-hl7_test_parse_nonstandard-separators.hl7", 202),  # no MSH-11 at all
])
def test_refused_samples(name: str, code: int) -> None:
    assert refusal(name)[0] == code and code in REJECT_CODES


def test_accepted_processing_ids_are_configurable() -> None:
    ctx = MappingContext(accepted_processing_ids=frozenset({"P", "T"}))
    msg = parse((SAMPLES / "piic_demo-alert-setting_ORU_R01_MDIL.hl7").read_bytes())
    assert map_message(msg, ctx).patient_keys == ["urn:vitalgate:id:1121|12312411"]


def test_accepted_types_still_check_version_and_event() -> None:
    base = "MSH|^~\\&|A|B|||20240101||{type}|1|P|{version}\rPID|||1\r"
    cases = {("ADT^A05", "2.5"): (201, "MSH^1^9"), ("ORU^R30", "2.5"): (201, "MSH^1^9"),
             ("ORU^R01", "2.1"): (203, "MSH^1^12"), ("ORU^R01", "3.0"): (203, "MSH^1^12"),
             ("MDM^T02", "2.5"): (200, "MSH^1^9")}
    for (kind, version), expected in cases.items():
        header = read_header(parse(base.format(type=kind, version=version)))
        with pytest.raises(HL7Error) as info:
            check_acceptable(header, MappingContext())
        assert (info.value.code, info.value.location) == expected


def test_dispatch_table_covers_the_required_events() -> None:
    events = {event for kind, event in hl7v2.MAPPERS if kind == "ADT"}
    assert events == {"A01", "A02", "A03", "A04", "A06", "A07", "A08", "A11", "A12", "A13",
                      "A17", "A40"}
    assert {("ORU", "R01"), ("ORU", "R40"), ("ORU", "R42")} <= hl7v2.MAPPERS.keys()


def test_public_api_is_exported() -> None:
    for name in hl7v2.__all__:
        assert hasattr(hl7v2, name), name
    assert {"parse", "parse_batch", "build_ack", "map_message", "read_header_lenient",
            "MappingContext", "HL7Error", "HL7ParseError"} <= set(hl7v2.__all__)
