"""FHIR R4B builders: DetectedIssue (alerts), the NEWS2 score Observation, RiskAssessment.

Builders return plain dicts (the ingest path stores JSON, validation happens in the tests).  Ids
are deterministic so a replay after a restart writes the same resources instead of new ones:
DetectedIssue.id is the episode UUID; the score and the risk assessment use UUID-5 of patient,
time and rule set or model.

Codes:
- alert conditions: ``urn:vitalgate:alert-condition`` (``news2``, ``limit-spo2-low``, ...);
- severity per the project's severity table: high / moderate / low from the condition level;
- NEWS2 total: SNOMED CT UK 1104051000000101 "Royal College of Physicians NEWS2 total score"
  plus ``urn:vitalgate:score#news2``.  LOINC 88330-6, quoted by one repository for NEWS2, is
  in fact "Mobility - admission performance" (CMS assessment), so it is not used;
- category ``survey`` (never ``vital-signs``): the engine's own output must not re-trigger it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from inference.alarms import Level
from inference.alert import AlertState, Mitigation
from inference.news2 import News2Result

__all__ = [
    "ALERT_IDENTIFIER_SYSTEM",
    "CONDITION_SYSTEM",
    "SEVERITY",
    "alert_from_detected_issue",
    "detected_issue",
    "news2_observation",
    "risk_assessment",
]

ALERT_IDENTIFIER_SYSTEM = "urn:vitalgate:alert"
CONDITION_SYSTEM = "urn:vitalgate:alert-condition"
ACTION_SYSTEM = "urn:vitalgate:alert-action"
SCORE_SYSTEM = "urn:vitalgate:score"
NEWS2_PARAM_SYSTEM = "urn:vitalgate:news2-parameter"
NEWS2_BAND_SYSTEM = "urn:vitalgate:news2-risk-band"
MODEL_SYSTEM = "urn:vitalgate:model"
SNOMED = "http://snomed.info/sct"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_IDS = uuid.UUID("0c8d2c8a-6f54-4a8e-b1c1-3b1f2a9d7e40")

SEVERITY = {Level.LOW: "low", Level.MODERATE: "moderate", Level.HIGH: "high"}
_DISPLAY = {
    "news2": "NEWS2 at or above the alerting band",
    "technical-feed-stale": "Device feed stale",
    "technical-disconnected": "Device disconnected",
    "technical-clock-drift": "Device clock drift",
}


def _time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("FHIR instants need a time zone")
    return value.isoformat()


def _display(condition: str) -> str:
    if condition in _DISPLAY:
        return _DISPLAY[condition]
    if condition.startswith("limit-"):
        param, _, direction = condition.removeprefix("limit-").rpartition("-")
        return f"{param.replace('_', ' ')} {direction} limit"
    return condition


def detected_issue(alert: AlertState) -> dict[str, Any]:
    """The DetectedIssue for one alert episode, in its current state."""
    if alert.level not in SEVERITY:
        raise ValueError("an alert needs a level above NONE")
    period: dict[str, str] = {"start": _time(alert.started)}
    if alert.ended is not None:
        period["end"] = _time(alert.ended)
    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": alert.episode_id,
        "identifier": [{"system": ALERT_IDENTIFIER_SYSTEM, "value": alert.episode_id}],
        "status": alert.status,
        "code": {"coding": [{"system": CONDITION_SYSTEM, "code": alert.condition,
                             "display": _display(alert.condition)}]},
        "severity": SEVERITY[alert.level],
        "patient": {"reference": f"Patient/{alert.patient_id}"},
        "identifiedPeriod": period,
        "author": {"reference": f"Device/{alert.author_device_id}"},
    }
    if alert.device_ids:
        resource["implicated"] = [{"reference": f"Device/{d}"} for d in alert.device_ids]
    if alert.observation_ids:
        resource["evidence"] = [{"detail": [{"reference": f"Observation/{o}"}
                                            for o in alert.observation_ids]}]
    if alert.mitigations:
        resource["mitigation"] = [
            {"action": {"coding": [{"system": ACTION_SYSTEM, "code": m.action}], "text": m.note or m.action},
             "date": _time(m.date), "author": _author(m.author)}
            for m in alert.mitigations
        ]
    return resource


def news2_observation(
    result: News2Result, patient_id: str, at: datetime, author_device_id: str
) -> dict[str, Any]:
    """The NEWS2 total with one component per parameter sub-score; only complete scores."""
    if not result.complete or result.total is None or result.band is None:
        raise ValueError(f"incomplete NEWS2 (missing {', '.join(result.missing)}) is not written")
    oid = uuid.uuid5(_IDS, f"news2|{patient_id}|{author_device_id}|{_time(at)}")
    return {
        "resourceType": "Observation",
        "id": str(oid),
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "survey"}]}],
        "code": {"coding": [
            {"system": SNOMED, "code": "1104051000000101",
             "display": "Royal College of Physicians NEWS2 (National Early Warning Score 2) total score"},
            {"system": SCORE_SYSTEM, "code": "news2", "display": "NEWS2 total score"},
        ], "text": "NEWS2"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": _time(at),
        "device": {"reference": f"Device/{author_device_id}"},
        "valueInteger": result.total,
        "interpretation": [{"coding": [{"system": NEWS2_BAND_SYSTEM, "code": result.band.value}],
                            "text": f"{result.band.value} clinical risk"}],
        "method": {"text": f"RCP NEWS2 2017, SpO2 scale {result.spo2_scale}"},
        "derivedFrom": [{"reference": f"Observation/{o}"} for o in result.observation_ids],
        "component": [
            {"code": {"coding": [{"system": NEWS2_PARAM_SYSTEM, "code": s.parameter}],
                      "text": f"{s.parameter} {s.value}"},
             "valueInteger": s.score}
            for s in result.subscores
        ],
    }


def risk_assessment(
    *,
    patient_id: str,
    at: datetime,
    probability: float,
    model_name: str,
    model_version: str,
    basis_ids: tuple[str, ...],
    performer_device_id: str,
) -> dict[str, Any]:
    """A RiskAssessment of deterioration from the model, stamped with its name and version."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability {probability} outside [0, 1]")
    rid = uuid.uuid5(_IDS, f"risk|{patient_id}|{model_name}|{model_version}|{_time(at)}")
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": str(rid),
        "status": "final",
        "subject": {"reference": f"Patient/{patient_id}"},
        "occurrenceDateTime": _time(at),
        "method": {"coding": [{"system": MODEL_SYSTEM, "code": model_name, "version": model_version}],
                   "text": f"{model_name} {model_version}"},
        "performer": {"reference": f"Device/{performer_device_id}"},
        "prediction": [{"outcome": {"text": "clinical deterioration"},
                        "probabilityDecimal": round(probability, 4)}],
    }
    if basis_ids:
        resource["basis"] = [{"reference": f"Observation/{o}"} for o in basis_ids]
    return resource


def _ref_ids(refs: object, prefix: str) -> tuple[str, ...]:
    if not isinstance(refs, list):
        return ()
    values = (r.get("reference") for r in refs if isinstance(r, Mapping))
    return tuple(v.removeprefix(prefix) for v in values if isinstance(v, str) and v.startswith(prefix))


def alert_from_detected_issue(resource: Mapping[str, Any]) -> AlertState:
    """Read back a DetectedIssue written by ``detected_issue`` (to restore state after a restart)."""
    try:
        levels = {name: level for level, name in SEVERITY.items()}
        period = resource["identifiedPeriod"]
        evidence = resource.get("evidence") or [{}]
        end = period.get("end")
        return AlertState(
            episode_id=resource["id"],
            patient_id=resource["patient"]["reference"].removeprefix("Patient/"),
            condition=resource["code"]["coding"][0]["code"],
            level=levels[resource["severity"]],
            started=datetime.fromisoformat(period["start"]),
            author_device_id=resource["author"]["reference"].removeprefix("Device/"),
            observation_ids=_ref_ids(evidence[0].get("detail"), "Observation/"),
            device_ids=_ref_ids(resource.get("implicated"), "Device/"),
            status=resource["status"],
            ended=None if end is None else datetime.fromisoformat(end),
            mitigations=tuple(
                _mitigation(m) for m in resource.get("mitigation", ())
            ),
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"not a DetectedIssue written by inference: {exc!r}") from exc


def _mitigation(entry: Mapping[str, Any]) -> Mitigation:
    action = entry["action"]
    code = action["coding"][0]["code"]
    text = action.get("text")
    author = entry["author"]
    return Mitigation(code, datetime.fromisoformat(entry["date"]), author.get("reference") or author["display"],
                      None if text in (None, code) else text)


_PEOPLE = ("Practitioner/", "PractitionerRole/")


def _author(who: str) -> dict[str, str]:
    """A Practitioner(Role) reference, or, for a name or badge given as text, a display-only Reference."""
    return {"reference": who} if who.startswith(_PEOPLE) else {"display": who}
