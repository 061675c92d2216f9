"""Ward benchmark: how many simulated ICU beds one node sustains with ingest lag under 1 s.

    .venv/bin/python bench/ward.py                       # 10,25,50,75,100 beds, 60 s each, stops at the first failure
    .venv/bin/python bench/ward.py --long                # 300 s per step (the 5-minute criterion)
    .venv/bin/python bench/ward.py --beds 5 --step-seconds 15   # smoke run
    .venv/bin/python bench/ward.py --full-waves          # 4 ECG leads at 500 Hz: ~2,400 points/bed/s
    .venv/bin/python bench/ward.py --postgres postgresql://postgres@127.0.0.1/test   # node on PostgreSQL

Per bed (all three vendors, real transports, real rates):
- Philips IntelliVue monitor over the LAN Data Export protocol (UDP): 15 numerics polled at
  1 Hz and 3 waves (ECG II 250 Hz, pleth 125 Hz, ABP 125 Hz) polled each second;
- Medtronic PB840 polled with SNDF every 2 s (serial-over-TCP) plus its 50 Hz waveform port
  (airway pressure and flow);
- two Baxter pumps as IHE PCD-01 ORU^R01 over MLLP every 10 s, and the ADT admit that lets
  the node associate the devices with the bed's patient.

The node (store, alerting, subscriptions, MLLP listener, device feeds: ``gateway.app.running_node``)
runs in THIS process on a fresh SQLite database per step; the simulators run in a child
process (``python -m gateway simulate``), so the CPU and memory figures are the node's alone;
the simulator's own CPU is reported beside them (``simulator_cpu_cores``): the two share the
cores, and a step where the simulator costs as much as the node would measure the simulator.
A step is *sustained* when, after a 10 s warm-up, the p99 of device ingest lag (receipt of a
record to its commit; for an IntelliVue reply, from the arrival of its first datagram at the
node's socket), of the monitor's source lag (the monitor's time stamp in a poll reply to its
commit: includes socket and event-loop queueing), of MLLP ACK latency (send to ACK, the ACK
follows the commit) and of the node's event-loop delay are all under 1 s, no MLLP send failed,
at least 90 % of the expected IntelliVue polls were answered, and no record still waiting for
the ingest writer at the end of the step has waited 1 s or more (a backlog is lag that the
percentiles over committed records cannot see yet). Output: one JSON object with every step
and the largest sustained bed count; the 1-bed step measured first is the baseline the per-bed
figures are compared against. Machine: 2 cores (the node and the simulators share them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.app import running_node  # noqa: E402
from gateway.devices.service import IngestStats  # noqa: E402
from gateway.gc_policy import GcPauses, apply_gc_policy, rss_mib, sample_loop  # noqa: E402
from gateway.settings import Settings  # noqa: E402

WARMUP_S = 10.0
LAG_LIMIT_MS = 1000.0


def _free_base(count: int) -> int:
    """A base port with ``count`` consecutive free TCP and UDP ports above it, every one checked.

    Below the kernel's ephemeral range (32768 and up on Linux): the node's device clients
    connect (and retry) before the simulator listens, and an outgoing socket's ephemeral
    port could otherwise take a port the simulator is about to bind."""
    for _ in range(50):
        base = random.randint(10000, 32000 - count)
        if all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port range")


def _free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _devices_setting(beds: int, pb_base: int, iv_base: int) -> str:
    """What ``DeviceSims.devices_setting`` reports for these base ports (known before the start)."""
    items = []
    for bed in range(1, beds + 1):
        items += [f"pb840@127.0.0.1:{pb_base + 2 * (bed - 1)}#ICU^{bed}^1",
                  f"pb840-waves@127.0.0.1:{pb_base + 2 * (bed - 1) + 1}#ICU^{bed}^1"]
    items += [f"intellivue@127.0.0.1:{iv_base + bed - 1}#ICU^{bed}^1" for bed in range(1, beds + 1)]
    return ",".join(items)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(len(s) * p))], 2)


class _Postgres:
    """A fresh PostgreSQL database per step (``--postgres``), dropped afterwards."""

    def __init__(self, admin_url: str) -> None:
        self.admin = admin_url.replace("postgresql+asyncpg://", "postgresql://")

    async def _exec(self, sql: str) -> Any:
        import asyncpg

        conn = await asyncpg.connect(self.admin)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async def create(self, name: str) -> str:
        await self._exec(f'CREATE DATABASE "{name}"')
        return self.admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"

    async def size(self, name: str) -> int:
        return int(await self._exec(f"SELECT pg_database_size('{name}')"))

    async def drop(self, name: str) -> None:
        await self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def run_step(beds: int, seconds: float, tmp: Path, monitor_waves: str = "standard",
                   postgres: _Postgres | None = None) -> dict[str, Any]:
    db = tmp / f"ward-{beds}.db"
    pg_name = f"vg_ward_{beds}_{random.randint(0, 10**6)}"
    db_url = await postgres.create(pg_name) if postgres else f"sqlite+aiosqlite:///{db}"
    # one block: MLLP, then two ventilator ports per bed, then one monitor port per bed
    mllp_port = _free_base(3 * beds + 1)
    pb_base, iv_base = mllp_port + 1, mllp_port + 1 + 2 * beds
    settings = Settings(database_url=db_url, mllp_port=mllp_port, log_level="WARNING",
                        devices=_devices_setting(beds, pb_base, iv_base), auth_required=True)
    sim_cmd = [sys.executable, "-m", "gateway", "simulate", "--beds", str(beds),
               "--duration", str(seconds + WARMUP_S), "--measure-after", str(WARMUP_S),
               "--mllp", f"127.0.0.1:{mllp_port}", "--pb840-listen", f"127.0.0.1:{pb_base}",
               "--intellivue-listen", f"127.0.0.1:{iv_base}", "--pumps", "2", "--no-hl7-monitors",
               "--seed", "7", "--monitor-waves", monitor_waves]
    lag: list[float] = []
    stop = asyncio.Event()
    load_before = os.getloadavg()[0]
    async def db_size() -> int:
        if postgres:
            return await postgres.size(pg_name)
        return sum(p.stat().st_size for p in tmp.glob(f"ward-{beds}.db*"))

    async with running_node(settings) as node:
        # the collector policy ``vitalgate serve`` applies once started (gateway/app.py): without the
        # start-up heap frozen every full collection scanned it (pauses of 0.7 s at 75 beds)
        apply_gc_policy(settings)
        size0 = await db_size()  # the migrated, empty database
        ingest = node.services.get("devices")
        children0 = _children_cpu_s()
        proc = await asyncio.create_subprocess_exec(*sim_cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE)
        rss_timeline: list[tuple[float, float, int]] = []
        ticker = asyncio.create_task(sample_loop(stop, lag, rss_timeline, 0.1, max(1.0, (seconds + WARMUP_S) / 20)))
        await asyncio.sleep(WARMUP_S)
        lag.clear()
        if ingest is not None:
            ingest.stats = IngestStats()
        cpu0, t0, rss0 = _cpu_s(), time.monotonic(), rss_mib()
        sim_cpu0 = _proc_cpu_s(proc.pid)
        with GcPauses() as pauses:
            out, err = await proc.communicate()
        cpu, wall = _cpu_s() - cpu0, time.monotonic() - t0
        # the simulator shares the 2 cores: if it costs more than the node, it is what saturates
        sim_cpu = _children_cpu_s() - children0 - sim_cpu0
        backlog, backlog_oldest_ms = ingest.backlog() if ingest is not None else (0, None)
        rss = rss_mib()
        stop.set()
        await ticker
        dev = ingest.stats.as_dict() if ingest is not None else {}
        lags = ingest.stats.lags_ms if ingest is not None else []
        source_lags = ingest.stats.source_lags_ms if ingest is not None else []
    sim = json.loads(out.decode() or "{}")
    size = await db_size() - size0
    if postgres:
        await postgres.drop(pg_name)
    gcs = pauses.summary(wall)
    hours = beds * seconds / 3600  # CPU is measured after the warm-up
    data_hours = beds * (seconds + WARMUP_S) / 3600  # the database grows from the first message
    expected_iv_polls = beds * (seconds + WARMUP_S - 3) * 2  # numerics + waves each second, minus start-up
    result = {
        "beds": beds, "seconds": seconds,
        "device_records": dev.get("records"), "device_resources": dev.get("resources"),
        "device_dead_letters": dev.get("dead_letters"), "device_commits": dev.get("commits"),
        "device_backlog_records": backlog, "device_backlog_oldest_ms": backlog_oldest_ms,
        "device_lag_ms_p50": _pct(lags, 0.5), "device_lag_ms_p99": _pct(lags, 0.99),
        "monitor_source_lag_ms_p50": _pct(source_lags, 0.5), "monitor_source_lag_ms_p99": _pct(source_lags, 0.99),
        "mllp_messages": sim.get("messages_sent"), "mllp_send_errors": sim.get("send_errors"),
        "mllp_ack_ms_p99": sim.get("ack_ms_p99"), "event_loop_lag_ms_p99": _pct(lag, 0.99),
        "intellivue_polls_answered": sim.get("intellivue_polls_answered"),
        "pb840_polls_answered": sim.get("pb840_polls_answered"),
        "resources_per_s": round((dev.get("resources") or 0) / wall, 1),
        "gc_pauses": gcs["all"]["count"], "gc_s": round(gcs["all"]["total_ms"] / 1000, 2),
        "gc_pause_ms_max": gcs["all"]["max_ms"], "gc_pause_ms_p99": gcs["all"]["p99_ms"],
        "gc_by_generation": {g: gcs[g] for g in ("gen0", "gen1", "gen2")},
        "gc_thresholds": list(settings.gc_thresholds),
        "node_cpu_cores": round(cpu / wall, 3), "simulator_cpu_cores": round(sim_cpu / wall, 3),
        "node_rss_mib": round(rss, 1),
        "node_rss_growth_mib": round(rss - rss0, 1),
        # [s since the node was up, RSS MiB, Python's allocated blocks in thousands (the heap without
        # SQLite's page cache, up to 256 MiB a connection)], warm-up included
        "node_rss_mib_timeline": rss_timeline,
        "db_growth_bytes": size, "db_mib_per_bed_hour": round(size / 2**20 / data_hours, 1) if data_hours else None,
        "node_cpu_s_per_bed_hour": round(cpu / hours, 1) if hours else None,
        "simulator_cpu_s_per_bed_hour": round(sim_cpu / hours, 1) if hours else None,
        # other processes on the machine compete for the 2 cores: a load well above what the node
        # and the simulator use means the step measured contention, not the node
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if proc.returncode or not out.strip():  # a step without its simulator measured nothing: say why
        result["simulator_error"] = err.decode(errors="replace")[-1000:]
    checks = [
        result["device_lag_ms_p99"] is not None and result["device_lag_ms_p99"] < LAG_LIMIT_MS,
        (result["monitor_source_lag_ms_p99"] or 0) < LAG_LIMIT_MS,
        (result["mllp_ack_ms_p99"] or 0) < LAG_LIMIT_MS,
        (result["event_loop_lag_ms_p99"] or 0) < LAG_LIMIT_MS,
        (result["mllp_send_errors"] or 0) == 0,
        (result["intellivue_polls_answered"] or 0) >= 0.9 * expected_iv_polls,
        (backlog_oldest_ms or 0) < LAG_LIMIT_MS,
    ]
    result["sustained"] = all(checks)
    return result


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--beds", default="10,25,50,75,100", help="comma-separated bed counts, tried in order")
    ap.add_argument("--step-seconds", type=float, default=60.0)
    ap.add_argument("--long", action="store_true", help="300 s per step (the 5-minute criterion)")
    ap.add_argument("--keep-going", action="store_true", help="run later steps after a failed one")
    ap.add_argument("--postgres", metavar="ADMIN_URL",
                    help="run the node on PostgreSQL (a fresh database per step), e.g. postgresql://postgres@127.0.0.1/test")
    ap.add_argument("--full-waves", action="store_true",
                    help="monitors with ECG I/II/III/V at 500 Hz + pleth + ABP (~2,400 data points/bed/s)")
    args = ap.parse_args()
    seconds = 300.0 if args.long else args.step_seconds
    counts = [int(b) for b in args.beds.split(",") if b.strip()]
    steps = []
    with tempfile.TemporaryDirectory(prefix="vg-ward-") as tmp:
        waves = "full" if args.full_waves else "standard"
        pg = _Postgres(args.postgres) if args.postgres else None
        baseline = await run_step(1, min(seconds, 30.0), Path(tmp), waves, pg)
        for beds in counts:
            step = await run_step(beds, seconds, Path(tmp), waves, pg)
            steps.append(step)
            print(json.dumps({"progress": step}), file=sys.stderr, flush=True)
            if not step["sustained"] and not args.keep_going:
                break
    best = max((s["beds"] for s in steps if s["sustained"]), default=0)
    per_bed = {k: next((s[k] for s in steps if s["beds"] == best), None)
               for k in ("node_cpu_s_per_bed_hour", "db_mib_per_bed_hour")}
    print(json.dumps({
        "benchmark": "ward", "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                         "note": "2 cores shared by the node and the simulator process"},
        "per_bed": {"monitor": "IntelliVue UDP: 15 numerics at 1 Hz + " + (
                        "ECG I/II/III/V 500 Hz, pleth 125 Hz, ABP 125 Hz" if args.full_waves
                        else "ECG 250 Hz, pleth 125 Hz, ABP 125 Hz"),
                    "ventilator": "PB840 SNDF every 2 s (~45 values) + 50 Hz pressure/flow waveform port",
                    "pumps": "2 x PCD-01 ORU^R01 every 10 s over MLLP",
                    "data_points_per_s": 15 + (2250 if args.full_waves else 500) + 100 + 23 + 2},
        "database": "postgresql" if args.postgres else "sqlite (WAL, synchronous=FULL)",
        "lag_limit_ms": LAG_LIMIT_MS, "step_seconds": seconds,
        "baseline_1_bed": baseline, "steps": steps,
        "largest_sustained_beds": best, "at_largest": per_bed, "target_beds": 100,
    }, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
