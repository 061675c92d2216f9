"""PB840/980 to FHIR: Device and Observations from the real captures validate with R4B."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B import get_fhir_model_class

from mappers.pb840 import connection_state_observation, decode_response, vent_record_to_fhir
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


def resources(frame, profile_name="medtronic-pb840", patient="Patient/p1", at=RECEIVED):
    profile = load_profile(profile_name)
    record = decode_response(frame, profile, received_at=at)
    return vent_record_to_fhir(record, profile, patient)


def by_vendor_code(res, code):
    for r in res:
        if r["resourceType"] != "Observation":
            continue
        for c in r["code"]["coding"]:
            if c["system"] == "urn:vitalgate:vendor-code:pb840" and c["code"] == code:
                return r
    raise AssertionError(code)


def codings(obs):
    return [(c["system"], c["code"]) for c in obs["code"]["coding"]]


@pytest.mark.parametrize(
    ("frame", "profile"),
    [(MISCF_840, "medtronic-pb840"), (MISCF_980, "medtronic-pb980"), (MISCA_840, "medtronic-pb840")],
)
def test_every_resource_validates_with_r4b(frame, profile):
    res = resources(frame, profile)
    assert res[0]["resourceType"] == "Device"
    for r in res:
        get_fhir_model_class(r["resourceType"]).model_validate(r)
    ids = [r["id"] for r in res]
    assert len(ids) == len(set(ids))
    assert all(len(i) <= 64 for i in ids)


def test_device_from_vent_id():
    dev = resources(MISCF_980, "medtronic-pb980")[0]
    assert dev["id"] == "medtronic-980-35b1500404"
    assert dev["serialNumber"] == "35B1500404"
    assert dev["modelNumber"] == "980"
    assert dev["manufacturer"].startswith("Medtronic")
    assert dev["deviceName"] == [{"name": "Puritan Bennett 980", "type": "model-name"}]
    assert dev["patient"] == {"reference": "Patient/p1"}


def test_total_rate_is_a_vital_sign():
    obs = by_vendor_code(resources(MISCF_840), "MISCF-70")
    assert obs["category"][0]["coding"][0]["code"] == "vital-signs"
    assert codings(obs)[0] == ("http://loinc.org", "9279-1")
    assert ("urn:iso:std:iso:11073:10101", "152490") in codings(obs)
    assert obs["valueQuantity"] == {"value": 14, "unit": "/min",
                                    "system": "http://unitsofmeasure.org", "code": "/min"}
    assert obs["subject"] == {"reference": "Patient/p1"}
    assert obs["device"] == {"reference": "Device/medtronic-840-3510053249"}
    assert obs["effectiveDateTime"] == "2026-11-28T05:00:12+00:00"


def test_litres_become_millilitres():
    res = resources(MISCF_840)
    vte = by_vendor_code(res, "MISCF-71")
    assert vte["valueQuantity"]["value"] == 378
    assert vte["valueQuantity"]["code"] == "mL"
    assert ("urn:iso:std:iso:11073:10101", "152664") in codings(vte)
    set_vt = by_vendor_code(res, "MISCF-14")
    assert set_vt["valueQuantity"]["value"] == 365
    assert set_vt["category"][0]["coding"][0]["code"] == "device-setting"
    ve = by_vendor_code(res, "MISCF-72")
    assert ve["valueQuantity"]["value"] == 5.29
    assert ve["valueQuantity"]["code"] == "L/min"


def test_pressures_in_cm_h2o():
    res = resources(MISCF_980, "medtronic-pb980")
    ppeak = by_vendor_code(res, "MISCF-73")
    assert ppeak["valueQuantity"]["value"] == 16 and ppeak["valueQuantity"]["code"] == "cm[H2O]"
    assert ("urn:iso:std:iso:11073:10101", "151973") in codings(ppeak)
    pplat = by_vendor_code(res, "MISCF-94")
    assert pplat["valueQuantity"]["value"] == 14
    assert ("urn:iso:std:iso:11073:10101", "152424") in codings(pplat)


def test_blank_and_off_fields_produce_no_observation():
    res = resources(MISCF_980, "medtronic-pb980")
    with pytest.raises(AssertionError):
        by_vendor_code(res, "MISCF-42")  # fTOT high limit OFF
    with pytest.raises(AssertionError):
        by_vendor_code(res, "MISCF-77")  # delivered O2 blank


def test_mode_and_alarms():
    res = resources(MISCF_980, "medtronic-pb980")
    mode = by_vendor_code(res, "MISCF-9+10+11")
    assert mode["valueString"] == "SIMV VC with pressure support"
    assert mode["note"] == [{"text": "reported as SIMV VC PS"}]
    alarms = by_vendor_code(res, "MISCF-alarms")
    assert alarms["valueString"] == "no active alarm"
    assert len(alarms["component"]) == 40
    states = {c["code"]["coding"][0]["code"]: c["valueString"] for c in alarms["component"]}
    assert states["MISCF-117"] == "RESET"


def test_implausible_value_has_data_absent_reason():
    stx = MISCF_840.index(b"\x02")
    frame = MISCF_840[: stx + 1] + MISCF_840[stx + 1 :].replace(b"14.0  ,0.378", b"999.0 ,0.378")
    obs = by_vendor_code(resources(frame), "MISCF-70")
    assert "valueQuantity" not in obs
    assert obs["dataAbsentReason"]["coding"][0]["code"] == "error"


def test_ids_are_deterministic():
    a = resources(MISCF_840)
    b = resources(MISCF_840)
    assert [r["id"] for r in a] == [r["id"] for r in b]
    later = resources(MISCF_840, at=RECEIVED + timedelta(seconds=2))
    assert later[0]["id"] == a[0]["id"]  # same Device
    assert {r["id"] for r in later[1:]}.isdisjoint({r["id"] for r in a[1:]})


def test_without_patient_and_settings():
    profile = load_profile("medtronic-pb840")
    record = decode_response(MISCF_840, profile, received_at=RECEIVED)
    res = vent_record_to_fhir(record, profile, None, include_settings=False, include_alarms=False)
    kinds = {r["category"][0]["coding"][0]["code"] for r in res[1:]}
    assert "device-setting" not in kinds and "device-alarm" not in kinds
    assert all("subject" not in r for r in res)


def test_connection_state_observation():
    obs = connection_state_observation("medtronic-840-3510053249", "silent", RECEIVED,
                                       "no valid response for 10.2 s", "Patient/p1")
    get_fhir_model_class("Observation").model_validate(obs)
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "silent"
    assert obs["interpretation"][0]["coding"][0]["code"] == "A"
    assert obs["device"] == {"reference": "Device/medtronic-840-3510053249"}
    ok = connection_state_observation("medtronic-840-3510053249", "responding", RECEIVED, "ok")
    assert "interpretation" not in ok
    with pytest.raises(ValueError):
        connection_state_observation("x", "asleep", RECEIVED, "")
