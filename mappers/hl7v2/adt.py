"""ADT A01/A02/A03/A04/A06/A07/A08/A11/A12/A13/A17/A40 to Patient, Encounter and Location.

- Encounter key: PV1-19 visit number, else patient + PV1-44 admit time, else one
  "current" encounter per patient (``patient|<system>|<value>``), so that events about a
  visit without a number still land on the same resource.
- Status per event (``EVENT_STATUS``); A03 sets ``period.end`` (PV1-45, else EVN-6, EVN-2,
  MSH-7) and marks the location completed; A08 finishes only when PV1-45 is sent; A13 and
  A12 re-open (the location comes from PV1-3, as the standard has it for cancels).
- A02 (and A12) list PV1-6, the prior location, as ``completed`` before the new one.
- A17 swaps beds: each PID/PV1 pair yields its Encounter with its new PV1-3 bed.
- A40 merge: PID is the surviving patient (``link`` replaces), each MRG-1 identifier set
  is an old Patient with ``active: false`` and ``link`` replaced-by. The old resource is
  re-written from MRG-1 alone (its demographics are not in the message).
"""

from __future__ import annotations

from typing import Any

from .context import MappingContext, MappingResult
from .entities import (
    PatientRef,
    encounter_key,
    identifiers,
    map_encounter,
    map_locations,
    map_patient,
)
from .errors import REQUIRED_FIELD_MISSING, HL7Error
from .fields import fhir_datetime, resource_id
from .header import read_header
from .tokenizer import Message, Segment

EVENT_STATUS = {
    "A01": "in-progress", "A02": "in-progress", "A03": "finished", "A04": "in-progress",
    "A06": "in-progress", "A07": "in-progress", "A08": "in-progress",
    "A11": "entered-in-error", "A12": "in-progress", "A13": "in-progress",
    "A17": "in-progress", "A40": "in-progress",
}
ADT_EVENTS = frozenset(EVENT_STATUS)


def map_adt(msg: Message, ctx: MappingContext) -> MappingResult:
    """Map one ADT message of a supported event; raises HL7Error for unmappable content."""
    header = read_header(msg)
    event = header.trigger_event or (msg.segment("EVN") or msg.msh).get(1, 1)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    keys: list[str] = []
    patient: PatientRef | None = None
    pid_seq = 0
    for seg in msg.segments:
        if seg.name == "PID":
            pid_seq += 1
            patient = map_patient(seg, ctx)
            if patient is None:
                raise HL7Error(REQUIRED_FIELD_MISSING, "no patient identifier", f"PID^{pid_seq}^3")
            _add(out, patient.resource)
            keys.extend(patient.keys)
        elif seg.name == "MRG" and patient is not None:
            for old in _merged(seg, patient, ctx):
                _add(out, old)
        elif seg.name == "PV1" and patient is not None and event != "A40":
            for resource in _visit(seg, patient, event, msg, ctx):
                _add(out, resource)
    if pid_seq == 0:
        raise HL7Error(REQUIRED_FIELD_MISSING, "ADT message without PID", "PID^1")
    return MappingResult(list(out.values()), keys)


def _add(out: dict[tuple[str, str], dict[str, Any]], resource: dict[str, Any]) -> None:
    out[(resource["resourceType"], resource["id"])] = resource


def _merged(mrg: Segment, survivor: PatientRef, ctx: MappingContext) -> list[dict[str, Any]]:
    idents = identifiers(mrg, 1, ctx)
    if not idents:
        raise HL7Error(REQUIRED_FIELD_MISSING, "MRG-1 prior patient identifier missing", "MRG^1^1")
    primary = next((i for i in idents if i.get("type", {}).get("coding", [{}])[0].get("code")
                    == "MR"), idents[0])
    old_id = resource_id("Patient", f"{primary['system']}|{primary['value']}")
    if old_id == survivor.resource["id"]:
        return []
    survivor.resource.setdefault("link", []).append(
        {"other": {"reference": f"Patient/{old_id}"}, "type": "replaces"})
    return [{"resourceType": "Patient", "id": old_id, "identifier": idents, "active": False,
             "link": [{"other": {"reference": survivor.reference}, "type": "replaced-by"}]}]


def _visit(pv1: Segment, patient: PatientRef, event: str, msg: Message,
           ctx: MappingContext) -> list[dict[str, Any]]:
    status = EVENT_STATUS.get(event, "in-progress")
    if event == "A08" and pv1.get(45, 1):
        status = "finished"
    key = encounter_key(pv1, patient, ctx) or f"patient|{patient.key}"
    enc = map_encounter(pv1, patient, key, status, ctx)
    resources: list[dict[str, Any]] = []
    entries = []
    if event in ("A02", "A12"):
        prior = map_locations(pv1, 6)
        resources += prior
        if prior:
            entries.append(_entry(prior[-1], "completed"))
    current = map_locations(pv1, 3)
    resources += current
    if current:
        entries.append(_entry(current[-1], "completed" if status == "finished" else "active"))
    if entries:
        enc["location"] = entries
    if event == "A03":
        _discharge_time(enc, pv1, msg, ctx)
    elif status == "in-progress" and "period" in enc:
        enc["period"].pop("end", None)
        if not enc["period"]:
            del enc["period"]
    return [*resources, enc]


def _entry(location: dict[str, Any], status: str) -> dict[str, Any]:
    return {"location": {"reference": f"Location/{location['id']}"}, "status": status}


def _discharge_time(enc: dict[str, Any], pv1: Segment, msg: Message, ctx: MappingContext) -> None:
    evn = msg.segment("EVN")
    candidates = [pv1.get(45, 1)]
    if evn is not None:
        candidates += [evn.get(6, 1), evn.get(2, 1)]
    candidates.append(msg.msh.get(7, 1))
    for raw in candidates:
        when = fhir_datetime(raw, ctx.site_tz) if raw else None
        if when:
            enc.setdefault("period", {})["end"] = when
            return
