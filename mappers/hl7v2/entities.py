"""Patient (PID), Location (PL: unit, room, bed), Encounter (PV1) and Device (EI) builders
shared by the ORU and ADT mappings. Ids are uuid5 over natural keys (see ``fields``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .context import MappingContext
from .escape import unescape
from .fields import fhir_datetime, present, resource_id
from .tokenizer import Segment

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_ID_TYPES = frozenset({"MR", "PI", "AN", "VN", "SS", "PT", "DL", "PPN", "NI", "PRN", "EN", "FI"})
_GENDER = {"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}
_NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "A": "anonymous"}
_CLASS = {
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "E": ("EMER", "emergency"),
    "P": ("PRENC", "pre-admission"),
    "R": ("AMB", "ambulatory"),
    "B": ("AMB", "ambulatory"),
}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
EUI64_SYSTEM = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"


@dataclass(frozen=True, slots=True)
class PatientRef:
    """A mapped patient: its resource, reference and ``system|value`` keys."""

    resource: dict[str, Any]
    reference: str
    key: str
    keys: list[str]


def identifiers(seg: Segment, n: int, ctx: MappingContext) -> list[dict[str, Any]]:
    """FHIR Identifiers from a repeating CX field (system from CX.4 via the context)."""
    out = []
    for rep in seg.repetitions(n):
        comps = rep.split(seg.enc.component) + ["", "", "", "", ""]
        value = present(unescape(comps[0], seg.enc))
        if not value:
            continue
        hd = comps[3].split(seg.enc.subcomponent)
        authority = present(unescape(hd[0] or (hd[1] if len(hd) > 1 else ""), seg.enc))
        ident: dict[str, Any] = {"system": ctx.identifier_system(authority), "value": value}
        kind = present(unescape(comps[4], seg.enc))
        if kind in _ID_TYPES:
            ident["type"] = {"coding": [{"system": V2_0203, "code": kind}]}
        elif kind:
            ident["type"] = {"text": kind}
        out.append(ident)
    return out


def map_patient(pid: Segment, ctx: MappingContext) -> PatientRef | None:
    """Patient from PID (ids from PID-3, else PID-2, else PID-4); None when no id is sent.

    The resource id comes from the first MR identifier, else the first identifier.
    An unreadable birth date (PID-7) is left out rather than refusing the vital signs.
    """
    idents = identifiers(pid, 3, ctx) or identifiers(pid, 2, ctx) or identifiers(pid, 4, ctx)
    if not idents:
        return None
    primary = next((i for i in idents if _type_code(i) == "MR"), idents[0])
    key = f"{primary['system']}|{primary['value']}"
    patient: dict[str, Any] = {"resourceType": "Patient", "id": resource_id("Patient", key),
                               "identifier": idents, "active": True}
    names = _names(pid)
    if names:
        patient["name"] = names
    gender = _GENDER.get(pid.get(8, 1).upper())
    if gender:
        patient["gender"] = gender
    birth = fhir_datetime(pid.get(7, 1), ctx.site_tz) if pid.get(7, 1) else None
    if birth:
        patient["birthDate"] = birth[:10]
    keys = [f"{i['system']}|{i['value']}" for i in idents]
    return PatientRef(patient, f"Patient/{patient['id']}", key, keys)


def _type_code(ident: dict[str, Any]) -> str:
    codings = ident.get("type", {}).get("coding", [])
    return str(codings[0]["code"]) if codings else ""


def _names(pid: Segment) -> list[dict[str, Any]]:
    enc = pid.enc
    names = []
    for rep in pid.repetitions(5):
        comps = [present(unescape(c, enc)) for c in rep.split(enc.component)] + [""] * 7
        family = comps[0].split(enc.subcomponent)[0] if comps[0] else ""
        name: dict[str, Any] = {}
        if family:
            name["family"] = family
        given = [g for g in (comps[1], comps[2]) if g]
        if given:
            name["given"] = given
        if comps[4]:
            name["prefix"] = [comps[4]]
        if comps[3]:
            name["suffix"] = [comps[3]]
        if name and comps[6] in _NAME_USE:
            name["use"] = _NAME_USE[comps[6]]
        if name:
            names.append(name)
    return names


def map_locations(seg: Segment, n: int) -> list[dict[str, Any]]:
    """Location chain unit > room > bed from a PL field (most specific last).

    Each PL component may carry sub-components (HD): the first one is the name, so the
    Philips form ``^^Bed&5&1`` is bed ``Bed``. Keys keep empty levels, so the same bed
    label under different units stays two beds.
    """
    comps = seg.components(n) + ["", "", "", ""]
    enc = seg.enc

    def part(i: int) -> str:
        return present(unescape(comps[i].split(enc.subcomponent)[0], enc))

    levels = [(part(0), "wa"), (part(1), "ro"), (part(2), "bd")]
    path = [part(3)]
    chain: list[dict[str, Any]] = []
    for name, kind in levels:
        path.append(name)
        if not name:
            continue
        key = "/".join(path)
        loc: dict[str, Any] = {
            "resourceType": "Location", "id": resource_id("Location", key),
            "identifier": [{"system": "urn:vitalgate:location", "value": key}],
            "status": "active", "name": name, "mode": "instance",
            "physicalType": {"coding": [{"system": PHYSICAL_TYPE, "code": kind}]},
        }
        if chain:
            loc["partOf"] = {"reference": f"Location/{chain[-1]['id']}"}
        chain.append(loc)
    return chain


def location_key(loc: dict[str, Any]) -> str:
    return str(loc["identifier"][0]["value"])


def encounter_key(pv1: Segment, patient: PatientRef | None, ctx: MappingContext) -> str | None:
    """Natural key: PV1-19 visit number, else patient + PV1-44 admit time, else None."""
    visit = identifiers(pv1, 19, ctx)
    if visit:
        return f"visit|{visit[0]['system']}|{visit[0]['value']}"
    if patient is not None and pv1.get(44, 1):
        return f"admit|{patient.key}|{pv1.get(44, 1)}"
    return None


def map_encounter(pv1: Segment, patient: PatientRef | None, key: str, status: str,
                  ctx: MappingContext) -> dict[str, Any]:
    """Encounter from PV1: identifier (PV1-19), class (PV1-2), period (PV1-44/45)."""
    code, display = _CLASS.get(pv1.get(2, 1).upper(), ("", ""))
    klass = ({"system": ACT_CODE, "code": code, "display": display} if code else
             {"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "code": "UNK"})
    enc: dict[str, Any] = {"resourceType": "Encounter", "id": resource_id("Encounter", key),
                           "status": status, "class": klass}
    visit = identifiers(pv1, 19, ctx)
    if visit:
        enc["identifier"] = visit[:1]
    if patient is not None:
        enc["subject"] = {"reference": patient.reference}
    period = {}
    for n, name in ((44, "start"), (45, "end")):
        when = fhir_datetime(pv1.get(n, 1), ctx.site_tz) if pv1.get(n, 1) else None
        if when:
            period[name] = when
    if period:
        enc["period"] = period
    return enc


def map_device(seg: Segment, n: int) -> tuple[str, dict[str, Any]] | None:
    """Device from an EI field (OBX-18): ``entity^namespace^universal id^universal id type``.

    The natural key is the whole EI; an EUI-64 (EI.3 with EI.4 ``EUI-64``, or EI.1 with
    EI.2 ``EUI-64``) also becomes an identifier in the IEEE EUI-64 system.
    """
    comps = [present(unescape(c, seg.enc)) for c in seg.components(n)] + ["", "", "", ""]
    if not any(comps[:4]):
        return None
    key = "^".join(comps[:4]).rstrip("^").upper()
    idents: list[dict[str, Any]] = []
    if comps[3].upper() in ("EUI-64", "EUI64") and comps[2]:
        idents.append({"system": EUI64_SYSTEM, "value": comps[2].upper()})
    elif comps[1].upper() in ("EUI-64", "EUI64") and comps[0]:
        idents.append({"system": EUI64_SYSTEM, "value": comps[0].upper()})
    if comps[0] and not (idents and idents[0]["value"] == comps[0].upper()):
        namespace = comps[1] if comps[1].upper() not in ("EUI-64", "EUI64") else ""
        idents.append({"system": "urn:vitalgate:device:" + (namespace or "local").replace(" ", "_"),
                       "value": comps[0]})
    device = {"resourceType": "Device", "id": resource_id("Device", key), "identifier": idents}
    return key, device
