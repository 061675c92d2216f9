"""Resource builders shared by the subscription tests."""

from __future__ import annotations

import asyncio
from typing import Any

from fhir_server.subscriptions.model import CONTENT_EXT, FILTER_EXT, HEARTBEAT_EXT, MAX_COUNT_EXT
from fhir_server.subscriptions.topics import TOPIC_BASE

OBS_TOPIC = TOPIC_BASE + "observation"
HR = "http://loinc.org|8867-4"


def subscription(topic: str = OBS_TOPIC, filters: tuple[str, ...] = (), *, endpoint: str | None = None,
                 channel: str = "rest-hook", content: str = "full-resource", heartbeat: int | None = None,
                 max_count: int | None = None, headers: tuple[str, ...] = ()) -> dict[str, Any]:
    ch: dict[str, Any] = {"type": channel, "payload": "application/fhir+json",
                          "_payload": {"extension": [{"url": CONTENT_EXT, "valueCode": content}]}}
    if endpoint is not None:
        ch["endpoint"] = endpoint
    if headers:
        ch["header"] = list(headers)
    ext = []
    if heartbeat is not None:
        ext.append({"url": HEARTBEAT_EXT, "valueUnsignedInt": heartbeat})
    if max_count is not None:
        ext.append({"url": MAX_COUNT_EXT, "valuePositiveInt": max_count})
    if ext:
        ch["extension"] = ext
    sub: dict[str, Any] = {"resourceType": "Subscription", "status": "requested", "reason": "test",
                           "criteria": topic, "channel": ch}
    if filters:
        sub["_criteria"] = {"extension": [{"url": FILTER_EXT, "valueString": f} for f in filters]}
    return sub


def observation(patient: str = "p1", code: str = "8867-4", value: float = 80, category: str = "vital-signs",
                id_: str | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-11-28T10:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    if id_:
        obs["id"] = id_
    return obs


def status_of(bundle: dict[str, Any]) -> dict[str, Any]:
    return bundle["entry"][0]["resource"]


async def caught_up(node, timeout: float = 5.0) -> None:
    """Wait until the matcher has processed every committed change (then let workers run)."""
    async with asyncio.timeout(timeout):
        while node.svc.matcher.cursor < node.store.notifier.seq:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
