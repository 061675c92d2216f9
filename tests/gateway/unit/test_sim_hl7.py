"""HL7v2 simulator output parses with python-hl7 and hl7apy and carries the right codes."""

from __future__ import annotations

from datetime import UTC, datetime

import hl7
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from gateway.simulators import (
    BedFeed,
    Physiology,
    PumpState,
    Vitals,
    monitor_oru,
    monitor_stream,
    pump_oru,
    pump_stream,
)

AT = datetime(2026, 11, 28, 5, 0, 0, tzinfo=UTC)
VITALS = Vitals(hr=80, rr=16, spo2=97, sbp=120, dbp=75, temp=37.2, fio2=30, etco2=38)


def obx_by_code(msg, code):
    for seg in msg.segments("OBX"):
        if str(seg[3][0][0]) == code:
            return seg
    raise AssertionError(code)


def test_mdc_monitor_message():
    raw = monitor_oru(BedFeed(5), VITALS, AT, "C1", "mdc")
    msg = hl7.parse(raw.decode())
    assert str(msg.segment("MSH")[9]) == "ORU^R01^ORU_R01"
    assert str(msg.segment("MSH")[10]) == "C1"
    assert str(msg.segment("MSH")[15]) == "AL" and str(msg.segment("MSH")[16]) == "NE"
    assert str(msg.segment("PV1")[3]) == "ICU^5^1"
    hr = obx_by_code(msg, "147842")
    assert str(hr[5]) == "80"
    assert str(hr[6]) == "264864^MDC_DIM_BEAT_PER_MIN^MDC"
    assert str(obx_by_code(msg, "150456")[5]) == "97"
    assert str(obx_by_code(msg, "150039")[5]) == "90"  # MAP (120 + 2*75) / 3
    assert str(obx_by_code(msg, "150344")[5]) == "37.2"
    strict = parse_message(raw.decode(), validation_level=VALIDATION_LEVEL.STRICT,
                           find_groups=True)
    strict.validate()
    assert strict.name == "ORU_R01"


def test_mdil_piic_variant():
    raw = monitor_oru(BedFeed(6), VITALS, AT, "C2", "mdil")
    msg = hl7.parse(raw.decode("latin-1"))
    assert str(msg.segment("MSH")[18]) == "8859/1"
    assert str(msg.segment("PV1")[3]) == "^^Bed6&6&1"  # Philips bed notation
    hr = obx_by_code(msg, "0002-4182")
    assert str(hr[3]) == "0002-4182^HR^MDIL"
    assert str(hr[6]) == "0004-0aa0^bpm^MDIL"
    assert str(obx_by_code(msg, "0002-4bb8")[5]) == "97"
    tolerant = parse_message(raw.decode("latin-1"), validation_level=VALIDATION_LEVEL.TOLERANT,
                             find_groups=True)
    assert tolerant.name == "ORU_R01"


def test_pump_pcd01():
    pump = PumpState(dose_ug_kg_min=0.1, weight_kg=80, concentration_mg_ml=0.064)
    raw = pump_oru(BedFeed(2), pump, AT, "P1")
    msg = hl7.parse(raw.decode())
    assert str(obx_by_code(msg, "184519")[5]) == "^pump-status-infusing"
    assert str(obx_by_code(msg, "184514")[5]) == "Norepinephrine"
    rate = obx_by_code(msg, "157784")
    assert str(rate[5]) == "7.5"  # 0.1 ug/kg/min * 80 kg * 60 / 64 ug/mL
    assert str(rate[6]) == "265266^MDC_DIM_MILLI_L_PER_HR^MDC"
    assert str(obx_by_code(msg, "157884")[5]) == "250.0"
    parse_message(raw.decode(), validation_level=VALIDATION_LEVEL.STRICT,
                  find_groups=True).validate()


def test_pump_volume_runs_out():
    pump = PumpState(dose_ug_kg_min=0.1, vtbi_ml=1.0)  # 7.5 mL/h: 1 mL in 480 s
    stream = list(pump_stream(BedFeed(1), AT, 600, interval_s=60, pump=pump))
    assert len(stream) == 10
    last = hl7.parse(stream[-1][1].decode())
    assert str(obx_by_code(last, "184519")[5]) == "^pump-status-not-infusing"
    assert str(obx_by_code(last, "157872")[5]) == "0.0"


def test_monitor_stream_timing_and_disconnect():
    phys = Physiology("device-disconnect", 1, onset_s=5, disconnect_s=3)
    items = list(monitor_stream(BedFeed(1), phys, AT, 12, interval_s=1.0))
    times = [t for t, _ in items]
    assert times == [0, 1, 2, 3, 4, 8, 9, 10, 11]
    ids = [str(hl7.parse(m.decode()).segment("MSH")[10]) for _, m in items]
    assert len(set(ids)) == len(ids)
