"""Device-patient association as FHIR R4B ``DeviceUseStatement`` (pure functions).

A device that sends no patient (a ventilator, an IntelliVue on the LAN, a PIIC bed feed) is
associated with the patient whose in-progress Encounter is at the device's bed (ADT). The
association is one DeviceUseStatement per device (id ``dus-<device id>``): ``subject`` the
patient, ``device`` the device, ``recordedOn`` when the gateway inferred it, extension
``association-status`` ``unconfirmed`` (inferred from the bed) or ``confirmed`` (a clinician
PUT/PATCHed it, ``source`` naming who), extension ``association-location`` the bed. Every
change is a new version of that resource, so its history is the audit trail of the
association. While unconfirmed, the resource and every Observation produced from the device
carry ``meta.tag`` ``urn:vitalgate:association|association-unconfirmed``: wrong-patient data is
a known hazard and must be visible on the data itself.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime
from typing import Any

from mappers.hl7v2.entities import map_locations
from mappers.hl7v2.tokenizer import parse

__all__ = [
    "ASSOCIATION_STATUS_URL",
    "LOCATION_URL",
    "UNCONFIRMED_TAG",
    "association_of",
    "bed_location_id",
    "device_use_statement",
    "dus_id",
    "tag_unconfirmed",
]

ASSOCIATION_STATUS_URL = "urn:vitalgate:fhir:StructureDefinition/association-status"
LOCATION_URL = "urn:vitalgate:fhir:StructureDefinition/association-location"
UNCONFIRMED_TAG = {"system": "urn:vitalgate:association", "code": "association-unconfirmed",
                   "display": "Device-patient association not confirmed by a clinician"}


@functools.lru_cache(maxsize=4096)  # asked for on every device record
def bed_location_id(pl: str) -> str:
    """The Location id the HL7v2 mappers give the bed in PV1-3 notation (``ICU^3^1``)."""
    seg = parse(f"MSH|^~\\&|||||||ADT^A01|1|P|2.5\rPV1||I|{pl}\r").segments[1]
    chain = map_locations(seg, 3)
    if not chain:
        raise ValueError(f"not a bed location: {pl!r}")
    return str(chain[-1]["id"])


def dus_id(device_id: str) -> str:
    return "dus-" + hashlib.sha256(device_id.encode()).hexdigest()[:40]


def device_use_statement(device_id: str, patient_ref: str, location_id: str | None, at: datetime,
                         *, status: str = "unconfirmed") -> dict[str, Any]:
    dus: dict[str, Any] = {
        "resourceType": "DeviceUseStatement",
        "id": dus_id(device_id),
        "status": "active",
        "subject": {"reference": patient_ref},
        "device": {"reference": f"Device/{device_id}"},
        "recordedOn": at.isoformat(),
        "extension": [{"url": ASSOCIATION_STATUS_URL, "valueCode": status}],
    }
    if location_id:
        dus["extension"].append({"url": LOCATION_URL, "valueReference": {"reference": f"Location/{location_id}"}})
    if status == "unconfirmed":
        dus["meta"] = {"tag": [dict(UNCONFIRMED_TAG)]}
    return dus


def association_of(dus: dict[str, Any]) -> tuple[str | None, bool]:
    """(patient reference, confirmed) of a stored DeviceUseStatement; (None, False) if ended."""
    if dus.get("status") not in ("active", "intended"):
        return None, False
    subject = (dus.get("subject") or {}).get("reference")
    state = next((e.get("valueCode") for e in dus.get("extension", ())
                  if e.get("url") == ASSOCIATION_STATUS_URL), None)
    return subject, state == "confirmed"


def tag_unconfirmed(resource: dict[str, Any]) -> None:
    meta = resource.setdefault("meta", {})
    tags = meta.setdefault("tag", [])
    if not any(t.get("code") == UNCONFIRMED_TAG["code"] for t in tags):
        tags.append(dict(UNCONFIRMED_TAG))
