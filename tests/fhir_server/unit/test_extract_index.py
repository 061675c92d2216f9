"""Index extraction: expected rows written by hand from the resources below."""

from __future__ import annotations

import json
from decimal import Decimal

from fhir_server.search import MAX_US, MIN_US, extract_index
from fhir_server.search.composite import set_key

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
CAT = "http://terminology.hl7.org/CodeSystem/observation-category"

# The series key of patient p1 (composite.py): a 72-bit hash of the id. Stored in every
# database: a change of format needs a migration (alembic 0005 is the last one).
P1 = "IWPqEbUEcV7l"
# 2024-05-01T08:00:00Z in epoch µs (1714550400 s).
T0 = 1_714_550_400_000_000

HR = json.loads(
    """{"resourceType": "Observation", "id": "hr-1", "status": "final",
    "identifier": [{"system": "urn:vitalgate:obs", "value": "bed1-147842-20240501T100000"}],
    "category": [{"coding": [{"system": "CAT", "code": "vital-signs", "display": "Vital Signs"}]}],
    "code": {"coding": [{"system": "LOINC", "code": "8867-4", "display": "Heart rate"},
                        {"system": "MDC", "code": "147842", "display": "MDC_ECG_HEART_RATE"}],
             "text": "HR"},
    "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"},
    "effectiveDateTime": "2024-05-01T10:00:00+02:00", "device": {"reference": "Device/d1"},
    "valueQuantity": {"value": 72.0, "unit": "/min", "system": "UCUM", "code": "/min"}}"""
    .replace('"CAT"', f'"{CAT}"').replace('"LOINC"', f'"{LOINC}"')
    .replace('"MDC"', f'"{MDC}"').replace('"UCUM"', f'"{UCUM}"'),
    parse_float=Decimal,
)


def test_vital_sign_observation_rows() -> None:
    rows = extract_index("Observation", HR)
    assert rows["token"] == [
        {"param": "Observation.code", "system": LOINC, "code": "8867-4", "text": "hr"},
        {"param": "Observation.code", "system": MDC, "code": "147842", "text": "hr"},
        {"param": "Observation.category", "system": CAT, "code": "vital-signs",
         "text": "vital signs"},
        {"param": "Observation.status", "system": None, "code": "final", "text": None},
        {"param": "Observation.identifier", "system": "urn:vitalgate:obs",
         "code": "bed1-147842-20240501T100000", "text": None},
    ]
    # no Observation.patient rows: patient is answered from the subject rows (shared_rows.py)
    assert rows["reference"] == [
        {"param": "Observation.subject", "target_type": "Patient", "target_id": "p1", "url": None},
        {"param": "Observation.device", "target_type": "Device", "target_id": "d1", "url": None},
        {"param": "Observation.encounter", "target_type": "Encounter", "target_id": "e1",
         "url": None},
    ]
    # 10:00:00+02:00 is 08:00:00Z; second precision covers the whole second.
    # plus the hidden end-time row of the patient's series of this whole code (composite.py), at
    # the latest end, and the series_member rows naming that series for each of its codings
    end = T0 + 999_999
    pair = f"Obs.pce|{P1}|&" + set_key("p1", [(LOINC, "8867-4"), (MDC, "147842")]).rpartition("|&")[2]
    assert rows["date"] == [
        {"param": "Observation.date", "lo": T0, "hi": end},
        {"param": pair, "lo": end, "hi": end},
    ]
    assert rows["member"] == [
        {"param": "Obs.member", "pkey": f"Obs.pce|{P1}| l|8867-4", "set_param": pair},
        {"param": "Obs.member", "pkey": f"Obs.pce|{P1}| m|147842", "set_param": pair},
    ]
    assert rows["quantity"] == [
        {"param": "Observation.value-quantity", "system": UCUM, "code": "/min", "value": 72.0,
         "canon_code": "/min", "canon_value": 72.0},
    ]
    assert "string" not in rows and "number" not in rows


def test_blood_pressure_components_and_fahrenheit() -> None:
    bp = {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": "Group/g1"},
        "effectivePeriod": {"start": "2024-05-01T08:00:00Z"},
        "component": [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
             "valueQuantity": {"value": Decimal("120"), "system": UCUM, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
             "valueQuantity": {"value": 16, "system": UCUM, "code": "kPa"}},
        ],
    }
    rows = extract_index("Observation", bp)
    # A Group subject is indexed for subject but not for patient.
    assert rows["reference"] == [
        {"param": "Observation.subject", "target_type": "Group", "target_id": "g1", "url": None},
    ]
    # An open Period end is open.
    assert rows["date"] == [{"param": "Observation.date", "lo": T0, "hi": MAX_US}]
    comp = [r for r in rows["quantity"] if r["param"] == "Observation.component-value-quantity"]
    assert [(r["code"], r["value"], r["canon_code"]) for r in comp] == [
        ("mm[Hg]", 120.0, "Pa"), ("kPa", 16.0, "Pa")]
    assert abs(comp[0]["canon_value"] - 15998.686) < 0.01  # 120 * 133.322387415
    assert comp[1]["canon_value"] == 16000.0
    codes = [r["code"] for r in rows["token"] if r["param"] == "Observation.component-code"]
    assert codes == ["8480-6", "8462-4"]
    # no patient (the subject is a Group): no series rows
    assert not [r for r in rows["date"] if r["param"].startswith("Obs.pce|")]

    temp = {"resourceType": "Observation",
            "valueQuantity": {"value": Decimal("98.6"), "system": UCUM, "code": "[degF]"}}
    (q,) = extract_index("Observation", temp)["quantity"]
    assert q["canon_code"] == "Cel" and abs(q["canon_value"] - 37.0) < 1e-9


def test_patient_names_identifiers_and_telecom() -> None:
    patient = {
        "resourceType": "Patient", "id": "p1", "active": True, "gender": "female",
        "birthDate": "1961-07",
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345",
                        "type": {"text": "MRN"}}],
        "name": [{"family": "Müller", "given": ["Anna", "Maria"], "prefix": ["Dr."]},
                 {"text": "Anna Müller-Lüdenscheidt"}],
        "telecom": [{"system": "phone", "value": "+49 30 1234"}],
    }
    rows = extract_index("Patient", patient)
    names = [(r["param"], r["value"], r["exact"]) for r in rows["string"]]
    assert names == [
        ("Patient.name", "muller", "Müller"),
        ("Patient.name", "anna", "Anna"),
        ("Patient.name", "maria", "Maria"),
        ("Patient.name", "dr.", "Dr."),
        ("Patient.name", "anna muller-ludenscheidt", "Anna Müller-Lüdenscheidt"),
        ("Patient.family", "muller", "Müller"),
        ("Patient.given", "anna", "Anna"),
        ("Patient.given", "maria", "Maria"),
    ]
    tokens = [(r["param"], r["system"], r["code"], r["text"]) for r in rows["token"]]
    assert tokens == [
        ("Patient.identifier", "urn:oid:1.2.36.146.595.217.0.1", "12345", "mrn"),
        ("Patient.gender", None, "female", None),
        ("Patient.active", None, "true", None),
        ("Patient.telecom", "phone", "+49 30 1234", None),
    ]
    # July 1961: 1961-07-01T00:00Z .. 1961-07-31T23:59:59.999999Z (-268358400 s, checked with datetime).
    assert rows["date"] == [{"param": "Patient.birthdate", "lo": -268_358_400_000_000,
                             "hi": -268_358_400_000_000 + 31 * 86_400_000_000 - 1}]


def test_references_absolute_history_canonical_and_numbers() -> None:
    ra = {
        "resourceType": "RiskAssessment", "status": "final",
        "subject": {"reference": "https://ehr.example.org/fhir/Patient/p9/_history/3"},
        "performer": {"reference": "Device/model-news2"},
        "encounter": {"reference": "urn:uuid:0f5b2c1e-1111-4222-8333-944455556666"},
        "occurrenceDateTime": "2024-05-01",
        "prediction": [{"probabilityDecimal": Decimal("0.25"),
                        "qualitativeRisk": {"coding": [{"code": "high"}]}},
                       {"probabilityDecimal": 1}],
    }
    rows = extract_index("RiskAssessment", ra)
    url = "https://ehr.example.org/fhir/Patient/p9/_history/3"
    assert rows["reference"] == [  # patient: from these subject rows (shared_rows.py)
        {"param": "RiskAssessment.subject", "target_type": "Patient", "target_id": "p9",
         "url": url},
        {"param": "RiskAssessment.performer", "target_type": "Device",
         "target_id": "model-news2", "url": None},
        {"param": "RiskAssessment.encounter", "target_type": None, "target_id": None,
         "url": "urn:uuid:0f5b2c1e-1111-4222-8333-944455556666"},
    ]
    assert rows["number"] == [{"param": "RiskAssessment.probability", "value": 0.25},
                              {"param": "RiskAssessment.probability", "value": 1.0}]
    day = 1_714_521_600_000_000  # 2024-05-01T00:00Z
    assert rows["date"] == [{"param": "RiskAssessment.date", "lo": day,
                             "hi": day + 86_400_000_000 - 1}]


def test_period_open_start_uri_and_unknown_type() -> None:
    enc = {"resourceType": "Encounter", "period": {"end": "2024-05-01T08:00:00.5Z"},
           "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                     "code": "ACUTE", "display": "inpatient acute"},
           "location": [{"location": {"reference": "Location/bed-7"}}]}
    rows = extract_index("Encounter", enc)
    # .5 has tenth-of-a-second precision: the end covers up to .599999.
    assert rows["date"] == [{"param": "Encounter.date", "lo": MIN_US, "hi": T0 + 599_999}]
    assert rows["token"] == [{"param": "Encounter.class",
                              "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                              "code": "ACUTE", "text": "inpatient acute"}]
    assert rows["reference"][0]["target_id"] == "bed-7"
    sub = {"resourceType": "Subscription", "channel": {"endpoint": "https://x.example/Hook"}}
    assert extract_index("Subscription", sub)["token"] == [
        {"param": "Subscription.url", "system": None, "code": "https://x.example/Hook",
         "text": None}]
    assert extract_index("Basic", {"resourceType": "Basic"}) == {}


def test_medication_choice_by_param_type() -> None:
    ma = {"resourceType": "MedicationAdministration",
          "medicationCodeableConcept": {"text": "Dopamine 400 mg / 250 mL"},
          "effectivePeriod": {"start": "2024-05-01T08:00:00Z", "end": "2024-05-01T09:00:00Z"},
          "device": [{"reference": "Device/pump-1"}]}
    rows = extract_index("MedicationAdministration", ma)
    assert rows["token"] == [{"param": "MedicationAdministration.code", "system": None,
                              "code": None, "text": "dopamine 400 mg / 250 ml"}]
    assert rows["date"] == [{"param": "MedicationAdministration.effective-time", "lo": T0,
                             "hi": T0 + 3600_000_000 + 999_999}]
    assert rows["reference"] == [{"param": "MedicationAdministration.device",
                                  "target_type": "Device", "target_id": "pump-1", "url": None}]
