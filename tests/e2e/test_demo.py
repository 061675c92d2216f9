"""``vitalgate demo`` (what ``make run`` starts) as a real process: beds in over MLLP, data out over FHIR."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_serves_dashboard_and_stores_simulated_beds(tmp_path: Path):
    http, mllp = free_port(), free_port()
    env = {**os.environ, "VITALGATE_HTTP_PORT": str(http), "VITALGATE_MLLP_PORT": str(mllp),
           "VITALGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/demo.db", "VITALGATE_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "demo", "--beds", "3", "--duration", "30"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 30
        observations = 0
        with httpx.Client(base_url=base, timeout=5) as client:
            while time.monotonic() < deadline:
                try:
                    observations = client.get("/fhir/Observation", params={"_summary": "count"}).json()["total"]
                except httpx.TransportError:
                    observations = 0
                if observations >= 30:
                    break
                time.sleep(0.5)
            assert observations >= 30, "the simulated beds' readings did not reach the store"
            page = client.get("/")
            assert page.status_code == 200 and "central station" in page.text
            patients = client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"]
            assert patients == 3
            assert client.get("/fhir/metadata").json()["fhirVersion"] == "4.3.0"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode in (0, -15), out.decode(errors="replace")[-2000:]
    assert b"Traceback" not in out, out.decode(errors="replace")[-3000:]
