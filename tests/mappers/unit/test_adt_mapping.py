"""ADT events to Patient / Encounter / Location, one test per event, plus the ADT samples."""

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B import get_fhir_model_class

from mappers.hl7v2 import HL7Error, MappingContext, map_message, parse, parse_batch

SAMPLES = Path("/work/shared/samples/hl7v2")
CTX = MappingContext(site_tz=ZoneInfo("Europe/Berlin"),
                     identifier_systems={"HOSP": "http://hospital.example/mrn"})
PID = "PID|1||555^^^HOSP^MR~999^^^EMPI^PI||Doe^Jane^Q^^Dr^^L||19700102|F"


def pv1(cls: str = "I", bed: str = "ICU^12^B^HOSP", prior: str = "", visit: str = "V100^^^HOSP^VN",
        admit: str = "20240301080000", discharge: str = "") -> str:
    fields = [""] * 46
    fields[1], fields[2], fields[3], fields[6] = "1", cls, bed, prior
    fields[19], fields[44], fields[45] = visit, admit, discharge
    return "PV1|" + "|".join(fields[1:])


def adt(event: str, *body: str) -> list[dict[str, Any]]:
    text = "\r".join([f"MSH|^~\\&|ADT|HOSP|VG|ICU|20240301120000||ADT^{event}|C1|P|2.5",
                      f"EVN|{event}|20240301115900", *body]) + "\r"
    resources = map_message(parse(text), CTX).resources
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resources


def only(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == kind]


def loc_name(resources: list[dict[str, Any]], ref: str) -> str:
    return next(r["name"] for r in resources if f"Location/{r['id']}" == ref)


def test_a01_admit() -> None:
    res = adt("A01", PID, pv1())
    (patient,) = only(res, "Patient")
    assert patient["identifier"][0] == {
        "system": "http://hospital.example/mrn", "value": "555",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "MR"}]}}
    assert patient["identifier"][1]["system"] == "urn:vitalgate:id:EMPI"
    assert patient["name"] == [{"family": "Doe", "given": ["Jane", "Q"], "prefix": ["Dr"],
                                "use": "official"}]
    assert patient["gender"] == "female" and patient["birthDate"] == "1970-01-02"
    (enc,) = only(res, "Encounter")
    assert enc["status"] == "in-progress" and enc["class"]["code"] == "IMP"
    assert enc["identifier"] == [{"system": "http://hospital.example/mrn", "value": "V100",
                                  "type": {"coding": [{
                                      "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                      "code": "VN"}]}}]
    assert enc["subject"]["reference"] == f"Patient/{patient['id']}"
    assert enc["period"] == {"start": "2024-03-01T08:00:00+01:00"}
    ward, room, bed = only(res, "Location")
    assert (ward["name"], room["name"], bed["name"]) == ("ICU", "12", "B")
    assert bed["partOf"]["reference"] == f"Location/{room['id']}"
    assert room["partOf"]["reference"] == f"Location/{ward['id']}"
    assert bed["identifier"][0]["value"] == "HOSP/ICU/12/B"
    assert enc["location"] == [{"location": {"reference": f"Location/{bed['id']}"},
                                "status": "active"}]


def test_events_of_one_visit_share_ids() -> None:
    ids = {event: (only(adt(event, PID, pv1()), "Encounter")[0]["id"],
                   only(adt(event, PID, pv1()), "Patient")[0]["id"])
           for event in ("A01", "A02", "A03", "A08", "A13")}
    assert len(set(ids.values())) == 1


def test_a02_transfer_keeps_prior_location() -> None:
    res = adt("A02", PID, pv1(bed="ICU^14^A^HOSP", prior="ICU^12^B^HOSP"))
    (enc,) = only(res, "Encounter")
    entries = [(loc_name(res, e["location"]["reference"]), e["status"]) for e in enc["location"]]
    assert entries == [("B", "completed"), ("A", "active")]


def test_a03_discharge() -> None:
    (enc,) = only(adt("A03", PID, pv1(discharge="20240305093000")), "Encounter")
    assert enc["status"] == "finished"
    assert enc["period"] == {"start": "2024-03-01T08:00:00+01:00",
                             "end": "2024-03-05T09:30:00+01:00"}
    assert enc["location"][0]["status"] == "completed"
    (enc,) = only(adt("A03", PID, pv1()), "Encounter")
    assert enc["period"]["end"] == "2024-03-01T11:59:00+01:00"  # EVN-2 when PV1-45 is empty


def test_a04_register_outpatient() -> None:
    (enc,) = only(adt("A04", PID, pv1(cls="O")), "Encounter")
    assert enc["status"] == "in-progress" and enc["class"]["code"] == "AMB"


def test_a06_and_a07_change_class() -> None:
    assert only(adt("A06", PID, pv1(cls="I")), "Encounter")[0]["class"]["code"] == "IMP"
    assert only(adt("A07", PID, pv1(cls="O")), "Encounter")[0]["class"]["code"] == "AMB"


def test_a08_update() -> None:
    res = adt("A08", PID.replace("Doe^Jane", "Doe-Smith^Jane"), pv1())
    assert only(res, "Patient")[0]["name"][0]["family"] == "Doe-Smith"
    assert only(res, "Encounter")[0]["status"] == "in-progress"
    assert only(adt("A08", PID, pv1(discharge="20240305")), "Encounter")[0]["status"] == "finished"


def test_a11_cancel_admit() -> None:
    assert only(adt("A11", PID, pv1()), "Encounter")[0]["status"] == "entered-in-error"


def test_a12_cancel_transfer() -> None:
    res = adt("A12", PID, pv1(bed="ICU^12^B^HOSP", prior="ICU^14^A^HOSP"))
    (enc,) = only(res, "Encounter")
    assert enc["status"] == "in-progress"
    assert loc_name(res, enc["location"][-1]["location"]["reference"]) == "B"
    assert enc["location"][-1]["status"] == "active"


def test_a13_cancel_discharge() -> None:
    (enc,) = only(adt("A13", PID, pv1(discharge="20240305093000")), "Encounter")
    assert enc["status"] == "in-progress" and "end" not in enc["period"]


def test_a17_swaps_beds() -> None:
    other = "PID|2||556^^^HOSP^MR||Roe^Rick||19600101|M"
    res = adt("A17", PID, pv1(bed="ICU^12^A^HOSP"),
              other, pv1(bed="ICU^12^B^HOSP", visit="V200^^^HOSP^VN"))
    encounters = only(res, "Encounter")
    patients = {f"Patient/{p['id']}": p["identifier"][0]["value"] for p in only(res, "Patient")}
    beds = {patients[e["subject"]["reference"]]: loc_name(res, e["location"][0]["location"]["reference"])
            for e in encounters}
    assert beds == {"555": "A", "556": "B"}


def test_a40_merge() -> None:
    res = adt("A40", PID, "MRG|444^^^HOSP^MR")
    new, old = only(res, "Patient")
    assert new["identifier"][0]["value"] == "555" and old["identifier"][0]["value"] == "444"
    assert old["active"] is False
    assert old["link"] == [{"other": {"reference": f"Patient/{new['id']}"}, "type": "replaced-by"}]
    assert new["link"] == [{"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"}]
    assert only(adt("A01", "PID|1||444^^^HOSP^MR", pv1()), "Patient")[0]["id"] == old["id"]


def test_adt_and_oru_patients_join() -> None:
    oru = ("MSH|^~\\&|MON|ICU|||20240301101500||ORU^R01|1|P|2.5\rPID|||555^^^HOSP^MR\r"
           "OBX|1|NM|147842^HR^MDC|1.1.1.1|70|/min^^UCUM|||||F\r")
    oru_patient = only(map_message(parse(oru), CTX).resources, "Patient")[0]
    assert oru_patient["id"] == only(adt("A01", PID, pv1()), "Patient")[0]["id"]


@pytest.mark.parametrize(("body", "location"), [
    ((pv1(),), "PID^1"),
    (("PID|1||", pv1()), "PID^1^3"),
])
def test_missing_patient_identity(body: tuple[str, ...], location: str) -> None:
    with pytest.raises(HL7Error) as info:
        adt("A01", *body)
    assert info.value.code == 101 and info.value.location == location


def test_a40_without_prior_identifier() -> None:
    with pytest.raises(HL7Error) as info:
        adt("A40", PID, "MRG|")
    assert (info.value.code, info.value.location) == (101, "MRG^1^1")


def test_fhs_batch_a04_sample() -> None:
    (msg,) = parse_batch((SAMPLES / "python-hl7_sample_file_FHS-BHS-batch_ADT_A04.hl7").read_bytes())
    res = map_message(msg, CTX)
    assert res.patient_keys == ["urn:vitalgate:id:100|0000112234"]
    (enc,) = only(res.resources, "Encounter")
    assert enc["class"]["code"] == "AMB" and enc["status"] == "in-progress"


def test_nulls_sample_a01() -> None:
    msg = parse((SAMPLES / "python-hl7_sample_msh_ADT_A01_nulls-repetitions.hl7").read_bytes())
    res = map_message(msg, CTX)
    assert res.patient_keys == ["urn:vitalgate:id:MSH_MRN|2148790", "urn:vitalgate:id:MSH_EMPI|162840"]
    (patient,) = only(res.resources, "Patient")
    assert patient["name"][0] == {"family": "RUFUSS", "given": ["MELLODIAL"]}
    assert patient["birthDate"] == "1952-11-29" and patient["gender"] == "female"
    (enc,) = only(res.resources, "Encounter")
    assert enc["period"]["start"] == "2014-02-10T22:53:00+01:00"  # PV1-44
    assert [r["name"] for r in only(res.resources, "Location")] == ["MBN1", "MBN1", "06"]
    for resource in res.resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_adt_owns_its_resources() -> None:
    text = "\r".join(["MSH|^~\\&|ADT|HOSP|VG|ICU|20240301120000||ADT^A01|C1|P|2.5", PID, pv1()])
    assert map_message(parse(text), CTX).reference_only == frozenset()
