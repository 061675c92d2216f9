"""Benchmark: the FHIR REST API over a real uvicorn server, on SQLite or PostgreSQL.

Seeds N Observations (``--patients`` x ``--codes`` series, one reading a minute per series)
through ``Store.write`` batches, then starts the FHIR app under uvicorn in a child process
(as ``gateway serve`` configures it: no access log, one worker) and drives it over loopback
HTTP from this process with aiohttp (httpx's pool tops out near 300 requests/s with 16
concurrent connections here, so it would measure the client, not the server):

- creates/s: single ``POST Observation`` from ``--clients`` concurrent clients;
- transaction resources/s: ``--tx-size``-entry transaction Bundles of POSTs;
- reads/s: ``GET Observation/{id}`` from ``--clients`` concurrent clients;
- search p50/p99: ``Observation?patient=&code=&date=ge<end - 1 h>&_count=20``, one at a time;
- ``$lastn`` p50/p99 (max=1): by one code, and by category (every code of the patient).

The server's CPU per created resource (single creates and transaction entries) comes from
``/proc`` (all its threads): on this shared machine the rates follow the load, that much less.

Baselines measured in the same run: ``GET /healthz`` (the HTTP + client ceiling), and the
same read, search and ``$lastn`` run in-process through the store without HTTP. Targets
(issue 2, this 2-core machine): creates >= 1,500/s, transactions >= 5,000 resources/s,
search p99 <= 10 ms, ``$lastn`` p99 <= 5 ms. Prints one JSON document.

    .venv/bin/python bench/fhir_rest.py --db sqlite
    .venv/bin/python bench/fhir_rest.py --db postgresql --observations 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_server.core.search_exec import series_members, with_series  # noqa: E402
from fhir_server.search import TokenValue, build_lastn, build_select, parse_search  # noqa: E402
from fhir_server.search.composite import composite_key, end_param, series_of  # noqa: E402
from fhir_server.storage import Store, WriteTx, make_engine, upgrade  # noqa: E402

BASE_US = 1_714_550_400_000_000  # 2024-05-01T08:00:00Z
LOINC = "http://loinc.org"
VITALS = "http://terminology.hl7.org/CodeSystem/observation-category"
PG_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "test"}


def iso(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us // 1_000_000))


def observation(i: int, patients: int, codes: int) -> dict[str, Any]:
    series = i % (patients * codes)
    p, c = series // codes, series % codes
    minute = i // (patients * codes)
    return {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": VITALS, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": f"code-{c}"}]},
        "subject": {"reference": f"Patient/p{p}"},
        "effectiveDateTime": iso(BASE_US + minute * 60_000_000),
        "valueQuantity": {"value": 60 + i % 50, "unit": "/min", "system": "http://unitsofmeasure.org",
                          "code": "/min"},
    }


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * len(s)))], 3)


def latency(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(ms, 0.50), "p99_ms": pct(ms, 0.99), "n": len(ms)}


# ---- database ---------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def database(kind: str) -> AsyncIterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="vg-bench-") as d:
            yield f"sqlite+aiosqlite:///{d}/bench.db"
        return
    import asyncpg

    name = f"vg_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(**PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+asyncpg://postgres@{PG_ADMIN['host']}:{PG_ADMIN['port']}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def seed(store: Store, n: int, patients: int, codes: int, batch: int) -> dict[str, Any]:
    async def patients_job(tx: WriteTx) -> None:
        for p in range(patients):
            tx.put("Patient", f"p{p}", {"resourceType": "Patient", "active": True})

    await store.write(patients_job)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        async def job(tx: WriteTx, start: int = start) -> None:
            for i in range(start, min(n, start + batch)):
                tx.put("Observation", f"o{i}", observation(i, patients, codes), method="POST")

        await store.write(job)
    secs = time.perf_counter() - t0
    return {"observations": n, "seconds": round(secs, 1), "resources_per_s": round(n / secs)}


async def in_process_baseline(store: Store, args: argparse.Namespace, end_us: int) -> dict[str, Any]:
    """The same read, search and $lastn straight through the store: no HTTP, no JSON parsing."""
    rnd = random.Random(2)
    reads = []
    for _ in range(args.samples):
        t0 = time.perf_counter()
        await store.read("Observation", f"o{rnd.randrange(args.observations)}")
        reads.append((time.perf_counter() - t0) * 1000)
    searches, lastn = [], []
    for _ in range(args.samples):
        p, c = rnd.randrange(args.patients), rnd.randrange(args.codes)
        q = parse_search("Observation", search_params(p, c, end_us), strict=True)
        t0 = time.perf_counter()
        # the series of the patient's code are read first (series_member), as the REST layer does
        rows = (await store.fetch(build_select(await with_series(store, q)))).all()
        searches.append((time.perf_counter() - t0) * 1000)
        assert len(rows) == 21, len(rows)
        t0 = time.perf_counter()
        key = composite_key(f"p{p}", LOINC, f"code-{c}")
        series = {end_param(key): series_of([key], await series_members(store, [end_param(key)]))}
        stmt = build_lastn(("Patient", f"p{p}"), [], [TokenValue(LOINC, f"code-{c}")], 1, series)
        rows = (await store.fetch(stmt)).all()
        lastn.append((time.perf_counter() - t0) * 1000)
        assert len(rows) == 1
    return {"store_read": latency(reads), "store_search": latency(searches), "store_lastn_code": latency(lastn)}


def search_params(p: int, c: int, end_us: int) -> list[tuple[str, str]]:
    return [("patient", f"p{p}"), ("code", f"{LOINC}|code-{c}"), ("date", f"ge{iso(end_us - 3_600_000_000)}"),
            ("_count", "20")]


# ---- the server -------------------------------------------------------------------------

async def serve(url: str, port: int) -> None:
    """Child process: the FHIR app on uvicorn, configured as ``gateway serve`` does."""
    import uvicorn

    from fhir_server.api import create_app
    from gateway.gc_policy import apply_gc_policy
    from gateway.settings import Settings

    store = Store(make_engine(url))
    await store.start()
    config = uvicorn.Config(create_app(store, f"http://127.0.0.1:{port}/fhir"), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="off", access_log=False)
    apply_gc_policy(Settings())  # the collector policy ``gateway serve`` applies once the app is built
    try:
        await uvicorn.Server(config).serve()
    finally:
        await store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far (all its threads: the SQLite writer's too)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server_process(url: str) -> Any:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", url, "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("benchmark server did not start")
            time.sleep(0.1)
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


# ---- load -------------------------------------------------------------------------------

async def concurrently(n: int, clients: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Run ``one(i)`` for i < n from ``clients`` workers; return operations per second."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await one(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return n / (time.perf_counter() - t0)


async def sequential(n: int, one: Callable[[int], Awaitable[None]]) -> list[float]:
    ms = []
    for i in range(n):
        t0 = time.perf_counter()
        await one(i)
        ms.append((time.perf_counter() - t0) * 1000)
    return ms


class Client:
    """A thin aiohttp wrapper: JSON in and out, status checked."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.s, self.base = session, base

    async def call(self, method: str, path: str, status: int = 200, *, params: Any = None,
                   body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = json.dumps(body) if body is not None else None
        async with self.s.request(method, self.base + path, params=params, data=data, headers=headers) as r:
            raw = await r.read()
            if r.status != status:
                raise RuntimeError(f"{method} {path}: {r.status} {raw[:300]!r}")
            return json.loads(raw) if raw and r.content_type.endswith("json") else None


async def drive(base: str, pid: int, args: argparse.Namespace, end_us: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=args.clients)
    headers = {"content-type": "application/fhir+json"}
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        c = Client(session, base)
        rnd = random.Random(1)
        n0 = args.observations

        async def health(_: int) -> None:
            await c.call("GET", "/healthz")

        async def create(i: int) -> None:
            await c.call("POST", "/fhir/Observation", 201, body=observation(n0 + i, args.patients, args.codes),
                         headers={"prefer": "return=minimal"})

        async def transaction(i: int) -> None:
            first = n0 + args.creates + i * args.tx_size
            entries = [{"resource": observation(first + k, args.patients, args.codes),
                        "request": {"method": "POST", "url": "Observation"}} for k in range(args.tx_size)]
            await c.call("POST", "/fhir", body={"resourceType": "Bundle", "type": "transaction", "entry": entries})

        async def read(_: int) -> None:
            await c.call("GET", f"/fhir/Observation/o{rnd.randrange(n0)}")

        async def search(_: int) -> None:
            p, code = rnd.randrange(args.patients), rnd.randrange(args.codes)
            b = await c.call("GET", "/fhir/Observation", params=search_params(p, code, end_us))
            if len(b["entry"]) != 20:
                raise RuntimeError("search returned a short page")

        async def lastn_code(_: int) -> None:
            p, code = rnd.randrange(args.patients), rnd.randrange(args.codes)
            b = await c.call("GET", "/fhir/Observation/$lastn",
                             params={"patient": f"p{p}", "code": f"{LOINC}|code-{code}", "max": "1"})
            if len(b["entry"]) != 1:
                raise RuntimeError("$lastn by code missed")

        async def lastn_category(_: int) -> None:
            p = rnd.randrange(args.patients)
            b = await c.call("GET", "/fhir/Observation/$lastn",
                             params={"patient": f"p{p}", "category": f"{VITALS}|vital-signs", "max": "1"})
            if len(b["entry"]) != args.codes:
                raise RuntimeError("$lastn by category missed codes")

        await concurrently(200, args.clients, health)  # warm-up: connections, caches
        await concurrently(200, args.clients, read)
        out["baseline_healthz_per_s"] = round(await concurrently(args.reads, args.clients, health))
        out["baseline_healthz"] = latency(await sequential(args.samples, health))
        # the server's CPU per resource: a load-robust figure beside the rates (this machine is shared)
        cpu0 = cpu_seconds(pid)
        out["creates_per_s"] = round(await concurrently(args.creates, args.clients, create))
        cpu1 = cpu_seconds(pid)
        tx_rate = await concurrently(args.transactions, args.tx_clients, transaction)
        cpu2 = cpu_seconds(pid)
        out["transaction_resources_per_s"] = round(tx_rate * args.tx_size)
        out["server_cpu_us_per_create"] = round((cpu1 - cpu0) / args.creates * 1e6)
        out["server_cpu_us_per_transaction_resource"] = round((cpu2 - cpu1) / (args.transactions * args.tx_size) * 1e6)
        out["reads_per_s"] = round(await concurrently(args.reads, args.clients, read))
        out["search"] = latency(await sequential(args.samples, search))
        out["lastn_code"] = latency(await sequential(args.samples, lastn_code))
        out["lastn_category"] = latency(await sequential(args.lastn_category_samples, lastn_category))
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    async with database(args.db) as url:
        engine = make_engine(url)
        await upgrade(engine)
        store = Store(engine)
        await store.start()
        seeded = await seed(store, args.observations, args.patients, args.codes, args.batch)
        if args.db == "postgresql":
            # The test server runs with autovacuum off; a production server's autovacuum would have
            # analysed tables this size. Without statistics the planner picks nested scans
            # ($lastn by category: seconds instead of milliseconds).
            async with engine.begin() as conn:
                await conn.execute(text("ANALYZE"))
        end_us = BASE_US + (args.observations // (args.patients * args.codes)) * 60_000_000
        baseline = await in_process_baseline(store, args, end_us)
        await store.close()
        with server_process(url) as (base, pid):
            http = await drive(base, pid, args, end_us)
    targets = {
        "creates_per_s>=1500": http["creates_per_s"] >= 1500,
        "transaction_resources_per_s>=5000": http["transaction_resources_per_s"] >= 5000,
        "search_p99<=10ms": http["search"]["p99_ms"] <= 10,
        "lastn_p99<=5ms": http["lastn_code"]["p99_ms"] <= 5,
    }
    return {
        "benchmark": "fhir_rest", "db": args.db,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "note": "2-core sandbox; "
                    "server (uvicorn, 1 process) and load client (aiohttp, 1 process) share the cores, and other "
                    "jobs may too: see loadavg", "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "params": {k: v for k, v in vars(args).items() if k not in ("serve", "port")},
        "seed_via_store": seeded, "http": http, "baseline_in_process": baseline, "targets_met": targets,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--observations", type=int, default=100_000)
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--codes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=5000, help="Observations per Store.write while seeding")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--creates", type=int, default=3000)
    ap.add_argument("--transactions", type=int, default=40)
    ap.add_argument("--tx-size", type=int, default=100)
    ap.add_argument("--tx-clients", type=int, default=4)
    ap.add_argument("--reads", type=int, default=5000)
    ap.add_argument("--samples", type=int, default=500, help="sequential requests per latency figure")
    ap.add_argument("--lastn-category-samples", type=int, default=50)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.serve, args.port))
        return
    if args.observations < args.patients * args.codes * 60:
        ap.error("--observations must give every series at least an hour of readings")
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
