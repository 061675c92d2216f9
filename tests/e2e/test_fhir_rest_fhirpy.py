"""The real server process (``python -m gateway serve``) driven by a third-party FHIR client, fhirpy.

Starts uvicorn on free ports with a temporary SQLite database, waits for ``/readyz``, then
creates, searches, reads, updates and deletes through ``fhirpy.AsyncFHIRClient``, and stops
the process with SIGTERM, expecting a clean exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

pytestmark = pytest.mark.e2e
LOINC = "http://loinc.org"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    http, mllp = free_port(), free_port()
    env = {**os.environ, "VITALGATE_HTTP_PORT": str(http), "VITALGATE_MLLP_PORT": str(mllp),
           "VITALGATE_HTTP_HOST": "127.0.0.1", "VITALGATE_LOG_LEVEL": "INFO",
           "VITALGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/e2e.db"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http}"
    try:
        _wait_ready(proc, base)
        yield base + "/fhir"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    log = out.decode(errors="replace")
    assert proc.returncode in (0, -signal.SIGTERM), log[-3000:]  # uvicorn re-raises the signal it handled
    assert "Finished server process" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def _wait_ready(proc: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stdout.read().decode(errors='replace')[-3000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server not ready within 30 s")


def _obs(patient_ref: str, code: str, minute: int, value: float) -> dict:
    return {
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": f"2024-03-01T10:{minute:02d}:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


async def test_fhirpy_crud_and_search_against_real_server(server: str):
    client = AsyncFHIRClient(server, extra_headers={"Accept": "application/fhir+json"})

    patient = client.resource("Patient", name=[{"family": "Testperson", "given": ["E2E"]}], gender="female",
                              identifier=[{"system": "urn:mrn", "value": "E2E-1"}])
    await patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"

    for i in range(12):
        await client.resource("Observation", **_obs(f"Patient/{patient.id}", "8867-4", i, 60 + i)).save()
    await client.resource("Observation", **_obs(f"Patient/{patient.id}", "9279-1", 0, 16)).save()

    heart = client.resources("Observation").search(patient=patient.id, code=f"{LOINC}|8867-4")
    assert await heart.count() == 12
    first = await heart.sort("-date").limit(5).fetch()
    assert [o["valueQuantity"]["value"] for o in first] == [71, 70, 69, 68, 67]
    everything = await heart.limit(5).fetch_all()  # follows the server's next links
    assert len(everything) == 12 and len({o.id for o in everything}) == 12
    recent = await client.resources("Observation").search(patient=patient.id).search(
        date__ge="2024-03-01T10:10:00Z").fetch_all()
    assert sorted(o["valueQuantity"]["value"] for o in recent) == [70, 71]
    chained = await client.resources("Observation").search(**{"subject:Patient.identifier": "urn:mrn|E2E-1"}).count()
    assert chained == 13

    read = await client.reference("Patient", patient.id).to_resource()
    assert read["name"][0]["family"] == "Testperson"
    read["gender"] = "other"
    await read.save()
    again = await client.resources("Patient").search(_id=patient.id).get()
    assert again["gender"] == "other" and again["meta"]["versionId"] == "2"

    found = await client.resources("Patient").search(identifier="urn:mrn|E2E-1").first()
    assert found is not None and found.id == patient.id

    for o in everything:
        await o.delete()
    assert await heart.count() == 0
    await again.delete()
    with pytest.raises((ResourceNotFound, OperationOutcome)):
        await client.reference("Patient", patient.id).to_resource()
    async with httpx.AsyncClient() as raw:
        gone = await raw.get(f"{server}/Patient/{patient.id}")
    assert gone.status_code == 410 and gone.json()["resourceType"] == "OperationOutcome"
