"""The real pipeline: an HL7 ORU^R01 with a deteriorating value in over MLLP, a DetectedIssue out,
found by FHIR search through the HTTP app, then acknowledged and resolved through the REST API."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gateway.app import build_app, running_node
from gateway.mllp.client import MllpClient
from gateway.settings import Settings
from gateway.simulators.hl7_monitor import BedFeed, monitor_oru
from gateway.simulators.physiology import Vitals

pytestmark = pytest.mark.e2e
NORMAL = Vitals(hr=78, rr=14, spo2=97, sbp=122, dbp=74, temp=36.9, fio2=30, etco2=38)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def node_client(tmp_path: Path, ruleset: str, units: str = ""
                      ) -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/edge.db", http_port=free_port(), mllp_port=free_port(),
                        alert_ruleset=ruleset, alert_unit_rulesets=units, model_dir=tmp_path / "models",
                        log_level="WARNING")
    async with running_node(settings) as node:
        transport = httpx.ASGITransport(app=build_app(node))
        async with httpx.AsyncClient(transport=transport, base_url=settings.fhir_base + "/",
                                     headers={"content-type": "application/fhir+json"}) as client:
            yield settings, client


async def send(settings: Settings, *messages: bytes) -> None:
    async with MllpClient(settings.mllp_host, settings.mllp_port) as mllp:
        for message in messages:
            ack = await mllp.call(message)
            assert ack is not None and b"MSA|CA|" in ack, ack


async def search_until(client: httpx.AsyncClient, path: str, params: dict, timeout: float = 10.0) -> list[dict]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        bundle = (await client.get(path, params=params)).json()
        found = [e["resource"] for e in bundle.get("entry", ())]
        if found or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)


async def patient_id(client: httpx.AsyncClient, bed: BedFeed) -> str:
    [patient] = await search_until(client, "Patient", {"identifier": bed.mrn})
    return str(patient["id"])


async def test_icu_desaturation_over_mllp_becomes_a_searchable_alert(tmp_path: Path):
    bed, now = BedFeed(7), datetime.now(UTC).replace(microsecond=0)
    # the node's default is the ward rule set; the bed's unit (PV1-3.1 "ICU") selects ICU limits
    async with node_client(tmp_path, "news2-ward", "ICU=icu-limits") as (settings, client):
        await send(settings, monitor_oru(bed, NORMAL, now, "E2E-1"),
                   monitor_oru(bed, _with(spo2=83), now + timedelta(seconds=1), "E2E-2"))
        pid = await patient_id(client, bed)
        [issue] = await search_until(client, "DetectedIssue", {"patient": f"Patient/{pid}"})
        assert issue["status"] == "preliminary" and issue["severity"] == "high"
        assert issue["code"]["coding"][0]["code"] == "limit-spo2-low"
        assert issue["author"] == {"reference": "Device/rules-icu-limits-1.2.0"}
        [evidence] = issue["evidence"][0]["detail"]
        spo2 = (await client.get(evidence["reference"])).json()
        assert spo2["valueQuantity"]["value"] == 83 and spo2["subject"] == {"reference": f"Patient/{pid}"}
        assert issue["implicated"] == [spo2["device"]]

        who = {"resourceType": "Parameters", "parameter": [{"name": "who", "valueString": "Practitioner/rn-4"}]}
        acked = await client.post(f"DetectedIssue/{issue['id']}/$acknowledge", json=who)
        assert acked.status_code == 200
        assert acked.json()["mitigation"][0]["author"] == {"reference": "Practitioner/rn-4"}
        resolved = await client.post(f"DetectedIssue/{issue['id']}/$resolve", json=who)
        assert resolved.status_code == 200 and resolved.json()["status"] == "final"
        risk = await search_until(client, "RiskAssessment", {"subject": f"Patient/{pid}"})
        assert risk and risk[0]["method"]["coding"][0]["code"] == "deterioration"


def _with(**changes: float) -> Vitals:
    return Vitals(**{**{f: getattr(NORMAL, f) for f in NORMAL.__dataclass_fields__}, **changes})


async def test_ward_news2_alert_needs_the_clinician_entered_parameters(tmp_path: Path):
    """NEWS2 from monitor values plus ACVPU and oxygen entered over REST; incomplete raises nothing."""
    bed, now = BedFeed(3), datetime.now(UTC).replace(microsecond=0)
    async with node_client(tmp_path, "news2-ward") as (settings, client):
        await send(settings, monitor_oru(bed, _with(rr=25), now, "W-1"))
        pid = await patient_id(client, bed)
        await asyncio.sleep(0.3)
        assert await search_until(client, "DetectedIssue", {"patient": pid}, timeout=0.2) == []  # incomplete
        for code, value in (("67775-7", {"valueCodeableConcept": {"text": "Alert"}}),
                            ("3151-8", {"valueQuantity": {"value": 0, "unit": "L/min", "code": "L/min",
                                                          "system": "http://unitsofmeasure.org"}})):
            obs = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
                   "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                   "effectiveDateTime": now.isoformat(), **value}
            assert (await client.post("Observation", json=obs)).status_code == 201
        # the rule set's 20 s persistence: the score must hold over readings 20 s apart
        await send(settings, monitor_oru(bed, _with(rr=25), now + timedelta(seconds=1), "W-2"),
                   monitor_oru(bed, _with(rr=25), now + timedelta(seconds=21), "W-3"))
        [issue] = await search_until(client, "DetectedIssue", {"patient": pid})
        assert issue["code"]["coding"][0]["code"] == "news2" and issue["severity"] == "moderate"
        scores = await search_until(client, "Observation", {"subject": f"Patient/{pid}", "code": "1104051000000101"})
        assert scores[0]["valueInteger"] == 3 and len(scores[0]["component"]) == 7
