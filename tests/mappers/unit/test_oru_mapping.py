"""ORU^R01/R40/R42 mapping: expected codes, units and values written from the sample text."""

from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B import get_fhir_model_class

from mappers.hl7v2 import HL7Error, MappingContext, map_message, parse

SAMPLES = Path("/work/shared/samples/hl7v2")
LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"
MDC = "urn:iso:std:iso:11073:10101"
# Test-only stand-in for the Philips vendor profile's MDIL -> MDC map.
MDIL = {"0002-4182": "147842", "0002-4bb8": "150456", "0002-5000": "151562",
        "0002-500a": "151562", "0002-480a": "149514", "0002-4a15": "150037",
        "0002-4a16": "150038", "0002-4a17": "150039"}
CTX = MappingContext(site_tz=ZoneInfo("Europe/Berlin"),
                     code_aliases={("MDIL", k): v for k, v in MDIL.items()},
                     accepted_processing_ids=frozenset({"P", "T"}))
ORU_SAMPLES = [p for p in sorted(SAMPLES.glob("*ORU_R*.hl7")) if "python-hl7" not in p.name]
VITAL_UNITS = {"8867-4": {"/min"}, "9279-1": {"/min"}, "2708-6": {"%"}, "8310-5": {"Cel", "[degF]"},
               "29463-7": {"kg", "g", "[lb_av]"}, "8480-6": {"mm[Hg]"}, "8462-4": {"mm[Hg]"},
               "8478-0": {"mm[Hg]"}, "19891-1": {"mm[Hg]", "kPa"}, "60985-9": {"mm[Hg]"}}


def mapped(name: str, ctx: MappingContext = CTX) -> list[dict[str, Any]]:
    return map_message(parse((SAMPLES / name).read_bytes()), ctx).resources


def observations(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == "Observation"]


def by_code(resources: list[dict[str, Any]], code: str) -> dict[str, Any]:
    found = [o for o in observations(resources)
             if any(c.get("code") == code for c in o["code"]["coding"])]
    assert len(found) == 1, code
    return found[0]


def check_vital_signs_profile(obs: dict[str, Any]) -> None:
    """FHIR R4B vital-signs profile rules that fhir.resources does not check."""
    assert obs["status"]
    assert {"system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs", "display": "Vital Signs"} in [
        c for cat in obs["category"] for c in cat["coding"]]
    loincs = [c["code"] for c in obs["code"]["coding"] if c["system"] == LOINC]
    assert loincs, "vital sign without LOINC"
    assert obs["subject"]["reference"].startswith("Patient/")
    assert "effectiveDateTime" in obs
    if loincs[0] == "85354-9":
        parts = {c["code"]: comp for comp in obs["component"] for c in comp["code"]["coding"]
                 if c["system"] == LOINC}
        assert {"8480-6", "8462-4"} <= parts.keys()
        for code in ("8480-6", "8462-4"):
            check_quantity(parts[code], code)
        return
    check_quantity(obs, loincs[0])


def check_quantity(element: dict[str, Any], loinc: str) -> None:
    if "dataAbsentReason" in element:
        return
    q = element["valueQuantity"]
    assert q["system"] == UCUM and isinstance(q["value"], Decimal)
    if loinc in VITAL_UNITS:
        assert q["code"] in VITAL_UNITS[loinc], (loinc, q["code"])


@pytest.mark.parametrize("path", ORU_SAMPLES, ids=lambda p: p.name)
def test_every_oru_sample_validates_and_is_deterministic(path: Path) -> None:
    first = map_message(parse(path.read_bytes()), CTX)
    again = map_message(parse(path.read_bytes()), CTX)
    assert first == again
    ids = [(r["resourceType"], r["id"]) for r in first.resources]
    assert len(ids) == len(set(ids))
    refs = {f"{t}/{i}" for t, i in ids}
    for resource in first.resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        for field in ("subject", "device", "encounter"):
            if field in resource and resource["resourceType"] == "Observation":
                assert resource[field]["reference"] in refs
        cats = [c["code"] for cat in resource.get("category", []) for c in cat["coding"]]
        if "vital-signs" in cats:
            check_vital_signs_profile(resource)


def test_pcd01_episodic_nibp() -> None:
    res = mapped("ihe-pcd-tf2-rev8_pcd01-episodic-nibp_ORU_R01.hl7")
    patient = next(r for r in res if r["resourceType"] == "Patient")
    assert patient["identifier"][0]["value"] == "12345"
    assert patient["identifier"][0]["system"] == "urn:vitalgate:id:A"
    assert patient["name"] == [{"family": "BEDS", "given": ["TEDSONS"], "use": "official"}]
    panel = by_code(res, "85354-9")
    assert [c["code"] for c in panel["code"]["coding"]] == ["85354-9", "150020"]
    assert panel["method"]["coding"] == [{"system": "http://snomed.info/sct", "code": "17146006"}]
    values = [(comp["code"]["coding"][0]["code"], comp["valueQuantity"]["value"])
              for comp in panel["component"]]
    assert values == [("8480-6", Decimal("111")), ("8462-4", Decimal("60")),
                      ("8478-0", Decimal("80"))]
    assert panel["component"][0]["valueQuantity"]["code"] == "mm[Hg]"
    assert panel["effectiveDateTime"] == "2011-06-02T04:58:42+02:00"
    assert panel["_effectiveDateTime"]["extension"][0]["valueString"] == "20110602045842"
    assert panel["status"] == "preliminary"  # OBX-11 R
    pulse = by_code(res, "149546")
    assert pulse["code"]["coding"][0]["code"] == "8867-4"
    assert pulse["valueQuantity"] == {"value": Decimal("63"), "unit": "{beat}/min",
                                      "system": UCUM, "code": "/min"}
    device = next(r for r in res if r["resourceType"] == "Device")
    assert pulse["device"]["reference"] == f"Device/{device['id']}"
    assert device["identifier"][0]["value"] == "080019FFFE3ED02D172.16.172.135"
    assert len(observations(res)) == 2


def test_pcd01_philips_monitor_status_and_limits() -> None:
    res = mapped("ihe-pcd-tf2-rev8_pcd01-philips-monitor_ORU_R01.hl7")
    hr = by_code(res, "147842")
    assert hr["status"] == "cancelled"  # OBX-11 X, HL7 v2-to-FHIR default
    assert hr["valueQuantity"]["value"] == Decimal("80") and hr["valueQuantity"]["code"] == "/min"
    assert hr["referenceRange"][0]["low"]["value"] == Decimal("50")
    assert hr["effectiveDateTime"] == "2015-01-22T18:26:56+01:00"  # OBR-7, site time zone
    perf = by_code(res, "150448")
    assert str(perf["valueQuantity"]["value"]) == "3.9" and perf["valueQuantity"]["code"] == "1"
    assert "category" not in perf
    assert by_code(res, "147236")["referenceRange"] == [
        {"high": {"value": Decimal("500"), "unit": "ms", "system": UCUM, "code": "ms"}}]
    assert by_code(res, "184327")["valueString"] == "MDC_ECG_SINUS_RHY"
    panel = by_code(res, "85354-9")
    assert [c["valueQuantity"]["value"] for c in panel["component"]] == [117, 82, 90]
    assert panel["effectiveDateTime"] == "2015-01-22T11:50:00+01:00"  # OBX-14
    devices = {r["identifier"][0]["value"]: r for r in res if r["resourceType"] == "Device"}
    vmd, mds = devices["0600dc750001"], devices["e86c094f-f751-4acf-92b2-38f11c1f6f57-Device"]
    assert hr["device"]["reference"] == f"Device/{vmd['id']}"
    assert vmd["parent"]["reference"] == f"Device/{mds['id']}"
    assert mds["type"]["coding"][0]["code"] == "69965"

    ctx = MappingContext(site_tz=ZoneInfo("Europe/Berlin"),
                         status_maps={"PAT_DEVICE_PHILIPS_C": {"X": "final"}},
                         alarm_limit_sources=frozenset({"PAT_DEVICE_PHILIPS_C"}))
    hr = by_code(mapped("ihe-pcd-tf2-rev8_pcd01-philips-monitor_ORU_R01.hl7", ctx), "147842")
    assert hr["status"] == "final" and "referenceRange" not in hr


def test_efficia_mdil_codes_and_units() -> None:
    res = mapped("philips-efficia-cm_ORU_R01_MDIL.hl7")
    hr = by_code(res, "0002-4182")
    assert [c["code"] for c in hr["code"]["coding"]] == ["8867-4", "147842", "0002-4182"]
    assert hr["code"]["coding"][2]["system"] == "urn:vitalgate:cs:MDIL"
    assert hr["code"]["text"] == "HR"
    assert hr["valueQuantity"] == {"value": Decimal("60"), "unit": "bpm", "system": UCUM,
                                   "code": "/min"}
    assert hr["effectiveDateTime"] == "2013-01-03T02:17:00+01:00"  # OBR-7
    assert hr["status"] == "final"
    spo2 = by_code(res, "0002-4bb8")
    assert [c["code"] for c in spo2["code"]["coding"]][:2] == ["2708-6", "59408-5"]
    assert spo2["valueQuantity"]["value"] == 96 and spo2["valueQuantity"]["code"] == "%"
    assert by_code(res, "0002-5000")["valueQuantity"]["value"] == 20
    assert by_code(res, "0002-480a")["code"]["coding"][1]["code"] == "149514"
    encounter = next(r for r in res if r["resourceType"] == "Encounter")
    assert encounter["identifier"][0]["value"] == "1234"  # PV1-19
    assert hr["encounter"]["reference"] == f"Encounter/{encounter['id']}"


def test_piic_bed_location_and_invasive_panel() -> None:
    res = mapped("piic_center-doc-sample_ORU_R01_MDIL.hl7")
    bed = next(r for r in res if r["resourceType"] == "Location")
    assert bed["name"] == "Doc1" and bed["physicalType"]["coding"][0]["code"] == "bd"
    panel = by_code(res, "85354-9")
    assert panel["code"]["coding"][1]["code"] == "150036"
    assert panel["method"]["coding"][0]["code"] == "77938009"
    assert [c["valueQuantity"]["value"] for c in panel["component"]] == [120, 70, 91]
    assert [c["code"] for comp in panel["component"] for c in comp["code"]["coding"]
            if c["system"] == MDC] == ["150037", "150038", "150039"]
    hr = by_code(res, "147842")
    assert hr["identifier"][0]["value"].startswith("2003-01-10T15:26:30")
    assert hr["identifier"][0]["value"].endswith("|bed:///Doc1|mdc:147842|0")


def test_piic_settings_alerts_and_absent_values() -> None:
    res = mapped("piic_demo-alert-setting_ORU_R01_MDIL.hl7")
    setting = by_code(res, "0402-f8f5")
    assert setting["category"][0]["coding"][0]["code"] == "device-setting"
    assert setting["valueString"] == "MONITORING"
    assert by_code(res, "0002-f887")["category"][0]["coding"][0]["code"] == "device-setting"
    alert = by_code(res, "5")
    assert alert["category"][0]["coding"][0]["code"] == "device-alert"
    assert alert["valueString"] == "SpO2T  No Pulse" and alert["code"]["text"] == "HardInop"
    ect = by_code(res, "0002-d006")
    assert ect["dataAbsentReason"]["coding"][0]["code"] == "unknown" and "valueString" not in ect
    rr = by_code(res, "0002-500a")
    assert rr["valueQuantity"]["value"] == 30 and "referenceRange" not in rr  # alarm limits
    pvc = by_code(res, "0002-4261")
    assert pvc["valueQuantity"]["code"] == "/min" and "category" not in pvc
    patient = next(r for r in res if r["resourceType"] == "Patient")
    assert patient["identifier"][0] == {
        "system": "urn:vitalgate:id:1121", "value": "12312411",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "MR"}]}}


def test_pcd10_infusion_event_codes() -> None:
    res = mapped("ihe-pcd-ipec-rev1.5_pcd10-delivery-start_ORU_R42.hl7")
    rate = by_code(res, "157784")["valueQuantity"]
    assert rate == {"value": Decimal("15.4"), "unit": "mL/h", "system": UCUM, "code": "mL/h"}
    dose = by_code(res, "157924")["valueQuantity"]
    assert str(dose["value"]) == "5.00" and dose["code"] == "ug/kg/min"
    assert str(by_code(res, "157884")["valueQuantity"]["value"]) == "250.0"
    assert by_code(res, "157872")["valueQuantity"]["code"] == "mL"
    assert str(by_code(res, "157993")["valueQuantity"]["value"]) == "0.0"
    assert by_code(res, "184514")["valueString"] == "Dopamine"
    assert by_code(res, "157760")["valueQuantity"]["code"] == "mg/mL"
    assert by_code(res, "184519")["valueCodeableConcept"] == {"text": "pump-status-infusing"}
    weight = by_code(res, "68063")
    assert weight["code"]["coding"][0]["code"] == "29463-7"
    assert weight["valueQuantity"]["value"] == Decimal("82.0")
    assert weight["effectiveDateTime"] == "2015-10-15T13:21:06-05:00"
    device = next(r for r in res if r["resourceType"] == "Device")
    assert device["identifier"][0] == {"system": "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680",
                                       "value": "0012210000000000"}
    assert by_code(res, "157784")["device"]["reference"] == f"Device/{device['id']}"


def test_pcd04_alarm_is_a_device_alert() -> None:
    res = mapped("ihe-pcd-tf2-rev8_pcd04-pump-occlusion-alarm_ORU_R40.hl7")
    alarm = by_code(res, "196616")
    assert alarm["category"][0]["coding"][0]["code"] == "device-alert"
    assert alarm["valueCodeableConcept"]["coding"][0]["code"] == "196940"
    assert alarm["valueCodeableConcept"]["text"] == "Occlusion"
    assert by_code(res, "68481")["valueString"] == "start"
    device = next(r for r in res if r["resourceType"] == "Device")
    assert device["identifier"][1]["value"] == "P6013"  # OBX-18 of facet 1.0.0.0.1
    assert {o["device"]["reference"] for o in observations(res)} == {f"Device/{device['id']}"}
    assert all("vital-signs" not in str(o.get("category")) for o in observations(res))


def test_lab_sample_with_unsupported_type_is_rejected() -> None:
    with pytest.raises(HL7Error) as info:
        mapped("python-hl7_sample_hl7_ORU_R01.hl7")
    assert info.value.code == 102 and info.value.location == "OBX^2^2"


MSH = "MSH|^~\\&|MON|ICU|||20240301101500||ORU^R01|1|P|2.5\rPID|||77^^^H^MR\r"


def one(obx: str, ctx: MappingContext = CTX) -> dict[str, Any]:
    return observations(map_message(parse(MSH + obx + "\r"), ctx).resources)[0]


def test_value_types() -> None:
    sn = one("OBX|1|SN|150456^MDC_PULS_OXIM_SAT_O2^MDC||<^90|%^%^UCUM|||||F")
    assert sn["valueQuantity"]["comparator"] == "<" and sn["valueQuantity"]["value"] == 90
    rng = one("OBX|1|SN|x^y^L||^10^-^20|mL|||||F")["valueRange"]
    assert rng["low"]["value"] == 10 and rng["high"]["value"] == 20
    ratio = one("OBX|1|SN|x^y^L||^1^:^2||||||F")["valueRatio"]
    assert ratio["numerator"]["value"] == 1 and ratio["denominator"]["value"] == 2
    na = one("OBX|1|NA|x^wave^L||1^2.5^^-3|mV|||||F")["valueSampledData"]
    assert na["data"] == "1 2.5 E -3" and na["dimensions"] == 1
    dtm = one("OBX|1|DTM|x^t^L||202403011000|||||F")
    assert dtm["valueDateTime"] == "2024-03-01T10:00:00+01:00"
    coded = one("OBX|1|CWE|x^c^L||123^Thing^SCT|||||F")["valueCodeableConcept"]
    assert coded["coding"] == [{"system": "http://snomed.info/sct", "code": "123",
                                "display": "Thing"}]
    text = one("OBX|1|TX|x^c^L||line\\.br\\two~three|||||F")["valueString"]
    assert text == "line\ntwo\nthree"


@pytest.mark.parametrize("text", ["1e999", "1E3", "inf", "NaN", "1_000", "0x10", "-", ".", "7 2"])
def test_nm_values_outside_the_hl7_nm_form_are_data_type_errors(text: str) -> None:
    """Decimal() reads all of these; HL7 NM is a sign, digits and a point only."""
    with pytest.raises(HL7Error) as info:
        one(f"OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||{text}|%^%^UCUM|||||F")
    assert info.value.code == 102 and info.value.location == "OBX^1^5"


@pytest.mark.parametrize(("text", "value"), [("+97", "97"), ("097.50", "97.50"), (".5", "0.5"), (" 97 ", "97"),
                                             ("123456789012345678901234567890", "123456789012345678901234567890")])
def test_nm_values_in_the_hl7_nm_form(text: str, value: str) -> None:
    got = one(f"OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||{text}|%^%^UCUM|||||F")["valueQuantity"]["value"]
    assert str(got) == value


def test_invalid_x_value_and_msh7_fallback() -> None:
    obs = one("OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1||264864^^MDC|||||X")
    assert obs["status"] == "cancelled"
    assert obs["dataAbsentReason"]["coding"][0]["code"] == "error"
    assert obs["effectiveDateTime"] == "2024-03-01T10:15:00+01:00"  # MSH-7
    check_vital_signs_profile(obs)


def test_times_with_offset_are_kept_and_ids_follow_time() -> None:
    a = one("OBX|1|NM|147842^HR^MDC|1.1.1.1|70|/min^^UCUM|||||F|||20240301101600-0500")
    b = one("OBX|1|NM|147842^HR^MDC|1.1.1.1|71|/min^^UCUM|||||F|||20240301101600-0500")
    c = one("OBX|1|NM|147842^HR^MDC|1.1.1.1|70|/min^^UCUM|||||F|||20240301101700-0500")
    assert a["effectiveDateTime"] == "2024-03-01T10:16:00-05:00"
    assert a["id"] == b["id"] != c["id"]
    assert a["identifier"] == b["identifier"] != c["identifier"]


def test_observation_ids_and_identifiers_sort_by_effective_time() -> None:
    # Another code and a later time: the later reading sorts after, whatever its code.
    times = ["20240301101600-0500", "20240301101601-0500", "20240301111600-0500", "20250101000000-0500"]
    codes = ["151562^RR^MDC", "147842^HR^MDC", "150456^SPO2^MDC", "149530^PR^MDC"]
    obs = [one(f"OBX|1|NM|{code}|1.1.1.1|70|/min^^UCUM|||||F|||{t}") for t, code in zip(times, codes, strict=True)]
    assert [o["id"] for o in obs] == sorted(o["id"] for o in obs)
    values = [o["identifier"][0]["value"] for o in obs]
    assert values == sorted(values) and values[0].startswith("2024-03-01T10:16:00-05:00|")
    assert obs[0]["id"].startswith(f"{1709306160000:012x}"[:8] + "-")  # epoch ms of the time


@pytest.mark.parametrize(("obx", "code", "location"), [
    ("OBX|1|NM|147842^HR^MDC||7O|/min^^UCUM|||||F", 102, "OBX^1^5"),
    ("OBX|1|NM|147842^HR^MDC||NaN|/min^^UCUM|||||F", 102, "OBX^1^5"),
    ("OBX|1|NM|147842^HR^MDC||70|/min^^UCUM|||||Q", 103, "OBX^1^11"),
    ("OBX|1|ED|147842^HR^MDC||70||||||F", 102, "OBX^1^2"),
    ("OBX|1|NM|147842^HR^MDC||70||||||F|||2024130110", 102, "OBX^1^14"),
    ("OBX|1|SN|147842^HR^MDC||<>^70||||||F", 102, "OBX^1^5"),
])
def test_unmappable_content_raises_with_location(obx: str, code: int, location: str) -> None:
    with pytest.raises(HL7Error) as info:
        one(obx)
    assert (info.value.code, info.value.location) == (code, location)


def test_observation_without_patient_points_at_device() -> None:
    msg = "MSH|^~\\&|MON|ICU|||20240301101500||ORU^R01|1|P|2.5\r" \
          "OBX|1|NM|150456^SpO2^MDC|1.1.1.1|97|%^^UCUM|||||F|||||||ABC^^0011223344556677^EUI-64\r"
    res = map_message(parse(msg), CTX)
    assert res.patient_keys == []
    obs = observations(res.resources)[0]
    device = next(r for r in res.resources if r["resourceType"] == "Device")
    assert obs["subject"] == {"reference": f"Device/{device['id']}"}
    # Still categorised: the gateway re-points subject once the bed association is known.
    assert "vital-signs" in str(obs["category"])


def test_pcd10_delivery_events_make_one_medication_administration() -> None:
    raw = (SAMPLES / "ihe-pcd-ipec-rev1.5_pcd10-delivery-start_ORU_R42.hl7").read_bytes()
    start = map_message(parse(raw), CTX).resources
    (admin,) = [r for r in start if r["resourceType"] == "MedicationAdministration"]
    get_fhir_model_class("MedicationAdministration").model_validate(admin)
    assert admin["status"] == "in-progress"
    assert admin["medicationCodeableConcept"] == {"coding": [{"code": "2222", "display": "Dopamine"}],
                                                 "text": "Dopamine"}
    assert admin["dosage"]["rateQuantity"] == {"value": Decimal("15.4"), "unit": "mL/h",
                                               "system": UCUM, "code": "mL/h"}
    assert admin["identifier"][0]["value"] == "AB12345^PCD-03"
    device = next(r for r in start if r["resourceType"] == "Device")
    assert admin["device"] == [{"reference": f"Device/{device['id']}"}]
    assert admin["effectiveDateTime"] == "2015-10-15T13:21:06-05:00"
    stop_raw = raw.replace(b"197288^MDC_EVT_PUMP_DELIV_START", b"0^MDC_EVT_PUMP_DELIV_STOP")
    (stop,) = [r for r in map_message(parse(stop_raw), CTX).resources
               if r["resourceType"] == "MedicationAdministration"]
    assert stop["status"] == "stopped" and stop["id"] == admin["id"]


def test_oru_patient_encounter_location_are_reference_only() -> None:
    res = map_message(parse((SAMPLES / "philips-efficia-cm_ORU_R01_MDIL.hl7").read_bytes()), CTX)
    expected = {f"{r['resourceType']}/{r['id']}" for r in res.resources
                if r["resourceType"] in ("Patient", "Encounter")}
    assert len(expected) == 2 and res.reference_only == expected
    assert all(not ref.startswith("Observation/") for ref in res.reference_only)


def test_each_patient_group_keeps_its_own_panel_subject() -> None:
    rows = ("OBX|1|NM|150021^SYS^MDC|1.1.1.1|{}|mm[Hg]^^UCUM|||||F\r"
            "OBX|2|NM|150022^DIA^MDC|1.1.1.2|{}|mm[Hg]^^UCUM|||||F\r")
    text = ("MSH|^~\\&|CENTRAL|ICU|||20240301101500||ORU^R01|1|P|2.5\r"
            "PID|||A1^^^H^MR\rPV1||I|ICU^^1\rOBR|1|||x|||20240301101400\r" + rows.format(120, 80) +
            "PID|||B2^^^H^MR\rPV1||I|ICU^^2\rOBR|1|||x|||20240301101400\r" + rows.format(100, 60))
    res = map_message(parse(text), CTX).resources
    patients = {f"Patient/{p['id']}": p["identifier"][0]["value"]
                for p in res if p["resourceType"] == "Patient"}
    panels = {patients[o["subject"]["reference"]]: o["component"][0]["valueQuantity"]["value"]
              for o in observations(res)}
    assert panels == {"A1": 120, "B2": 100}


def test_memoised_codings_are_not_shared_between_resources() -> None:
    ctx = MappingContext(site_tz=ZoneInfo("UTC"))
    raw = (SAMPLES / "ihe-pcd-tf2-rev8_pcd01-philips-monitor_ORU_R01.hl7").read_bytes()
    first = by_code(map_message(parse(raw), ctx).resources, "147842")
    first["code"]["coding"][0]["display"] = "changed downstream"
    second = by_code(map_message(parse(raw), ctx).resources, "147842")
    assert second["code"]["coding"][0]["display"] == "Heart rate"


def test_series_memo_keeps_each_messages_delimiters() -> None:
    """An OBX's codings and label are memoised per series; ``\\F\\`` in them decodes to the
    message's own field separator, so two senders with other separators get their own."""
    ctx = MappingContext(site_tz=ZoneInfo("UTC"))

    def label(fs: str) -> str:
        raw = fs.join(["MSH", "^~\\&", "MON", "ICU", "", "", "20240301101500+0000", "", "ORU^R01", "c1",
                       "P", "2.6"]) + "\r"
        raw += fs.join(["OBX", "1", "NM", "147842^HR \\F\\ ECG^MDC", "1.1.1.1", "72", "/min^/min^UCUM",
                        "", "", "", "", "R"]) + "\r"
        return str(by_code(map_message(parse(raw.encode()), ctx).resources, "147842")["code"]["text"])

    assert [label("|"), label("#"), label("|")] == ["HR | ECG", "HR # ECG", "HR | ECG"]
