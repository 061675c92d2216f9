"""``vitalgate simulate`` against a real ``vitalgate serve`` process configured by VITALGATE_*:
HL7v2 over MLLP, PB840 and IntelliVue polled by the node; the data read back over FHIR REST."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mappers.association import dus_id


def _free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _free_range(count: int) -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + count < 65000 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port range")


def _count(client: httpx.Client, type_: str, **params: str) -> int:
    try:
        return int(client.get(f"/fhir/{type_}", params={**params, "_summary": "count"}).json()["total"])
    except (httpx.TransportError, KeyError, ValueError):
        return 0


def test_simulate_feeds_a_served_node(tmp_path: Path) -> None:
    http, mllp, pb, iv = _free_range(1), _free_range(1), _free_range(4), _free_range(2)
    devices = ",".join([f"pb840@127.0.0.1:{pb}#ICU^1^1", f"pb840-waves@127.0.0.1:{pb + 1}#ICU^1^1",
                        f"pb840@127.0.0.1:{pb + 2}#ICU^2^1", f"pb840-waves@127.0.0.1:{pb + 3}#ICU^2^1",
                        f"intellivue@127.0.0.1:{iv}#ICU^1^1", f"intellivue@127.0.0.1:{iv + 1}#ICU^2^1"])
    env = {**os.environ, "VITALGATE_HTTP_PORT": str(http), "VITALGATE_MLLP_PORT": str(mllp),
           "VITALGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/node.db", "VITALGATE_LOG_LEVEL": "WARNING",
           "VITALGATE_DEVICES": devices}
    node = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=5) as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # until the node answers
                try:
                    client.get("/fhir/metadata")
                    break
                except httpx.TransportError:
                    time.sleep(0.3)
            sim = subprocess.run([sys.executable, "-m", "gateway", "simulate", "--beds", "2", "--duration", "10",
                                  "--pb840-listen", f"127.0.0.1:{pb}", "--intellivue-listen", f"127.0.0.1:{iv}",
                                  "--waveforms", "--seed", "3"],
                                 env=env, cwd=tmp_path, capture_output=True, timeout=60)
            assert sim.returncode == 0, sim.stderr.decode(errors="replace")[-2000:]
            stats = json.loads(sim.stdout)
            assert stats["devices_setting"] == devices  # what the node was configured with
            assert stats["send_errors"] == 0 and set(stats["acks"]) <= {"AA", "CA"}  # ADT: AA, PCD-01: CA
            assert sum(stats["acks"].values()) == stats["messages_sent"] >= 20
            assert stats["intellivue_polls_answered"] > 10 and stats["pb840_polls_answered"] >= 4
            assert _count(client, "Patient") == 2
            assert _count(client, "Observation", device="Device/intellivue-0009fb000001") > 20
            assert _count(client, "Observation", code="urn:iso:std:iso:11073:10101|151792") > 2  # vent paw waves
            assert _count(client, "Observation", code="urn:iso:std:iso:11073:10101|131330") > 2  # ECG waves
            for bed in (1, 2):  # read by id (DeviceUseStatement has no search parameters yet)
                dus = client.get(f"/fhir/DeviceUseStatement/{dus_id(f'intellivue-0009fb{bed:06x}')}").json()
                assert dus.get("meta", {}).get("tag", [{}])[0].get("code") == "association-unconfirmed", dus
                assert dus["subject"]["reference"].startswith("Patient/")
    finally:
        node.terminate()
        out, _ = node.communicate(timeout=20)
    assert b"Traceback" not in out, out.decode(errors="replace")[-3000:]
