"""IHE PCD-10 (ORU^R42) delivery events to MedicationAdministration, next to the pump
Observations the ORU mapping already produced.

An Observation coded ``MDC_ATTR_EVT_COND`` whose value is a pump delivery event starts or
updates one MedicationAdministration per pump and order (OBR-2 placer order number, else
OBR-3): START -> ``in-progress``, PAUSE -> ``on-hold``, COMP -> ``completed``,
STOP -> ``stopped``. The drug is OBR-4 (else the ``MDC_DRUG_NAME_LABEL`` value); the rate
(``MDC_FLOW_FLUID_PUMP`` 157784) becomes ``dosage.rateQuantity``. Without a patient no
MedicationAdministration is made (its subject is required).
"""

from __future__ import annotations

from typing import Any

from ..terminology import MDC_SYSTEM
from .fields import cwe_concept, resource_id
from .tokenizer import Message

EVENT_STATUS = {
    "MDC_EVT_PUMP_DELIV_START": "in-progress",
    "MDC_EVT_PUMP_DELIV_PAUSE": "on-hold",
    "MDC_EVT_PUMP_DELIV_COMP": "completed",
    "MDC_EVT_PUMP_DELIV_STOP": "stopped",
}


def _mdc_display(concept: dict[str, Any]) -> str:
    for coding in concept.get("coding", []):
        if coding.get("system") == MDC_SYSTEM and coding.get("display"):
            return str(coding["display"])
    return ""


def _by_refid(observations: list[dict[str, Any]], refid: str) -> dict[str, Any] | None:
    return next((o for o in observations if _mdc_display(o["code"]) == refid), None)


def medication_administrations(msg: Message, resources: list[dict[str, Any]]
                               ) -> list[dict[str, Any]]:
    """MedicationAdministrations for the delivery events among ``resources``."""
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    event = _by_refid(observations, "MDC_ATTR_EVT_COND")
    obr = msg.segment("OBR")
    if event is None or obr is None or "subject" not in event:
        return []
    status = EVENT_STATUS.get(_mdc_display(event.get("valueCodeableConcept", {})))
    if status is None or not event["subject"]["reference"].startswith("Patient/"):
        return []
    order = obr.get(2) or obr.get(3)
    device = event.get("device", {}).get("reference", "")
    key = f"{device}|{order}" if order else f"{device}|{event['id']}"
    admin: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": resource_id("MedicationAdministration", key),
        "status": status,
        "medicationCodeableConcept": _drug(obr.components(4), obr.enc, observations),
        "subject": event["subject"],
        "effectiveDateTime": event["effectiveDateTime"],
        "supportingInformation": [{"reference": f"Observation/{o['id']}"} for o in observations],
    }
    if order:
        admin["identifier"] = [{"system": "urn:vitalgate:infusion-order", "value": order}]
    if device:
        admin["device"] = [{"reference": device}]
    rate = _by_refid(observations, "MDC_FLOW_FLUID_PUMP")
    if rate is not None and "valueQuantity" in rate:
        admin["dosage"] = {"rateQuantity": rate["valueQuantity"]}
    return [admin]


def _drug(comps: list[str], enc: Any, observations: list[dict[str, Any]]) -> dict[str, Any]:
    concept = cwe_concept(comps, enc)
    if concept is not None:
        if "text" not in concept and len(comps) > 1 and comps[1]:
            concept["text"] = comps[1]
        return concept
    label = _by_refid(observations, "MDC_DRUG_NAME_LABEL")
    if label is not None and "valueString" in label:
        return {"text": label["valueString"]}
    return {"text": "unknown infusion"}
