"""CPU of the alerting consumer per Observation, on stored change-log entries, without a running node.

    .venv/bin/python bench/alert_consumer_cpu.py --record var/bench-consumer.db   # once: 20 s of 500 beds
    .venv/bin/python bench/alert_consumer_cpu.py --db var/bench-consumer.db       # the figure (JSON)
    .venv/bin/python bench/alert_consumer_cpu.py --db var/bench-consumer.db --profile 25   # + top functions

``--record`` runs ``bench/alert_latency.py``'s node (``gateway serve``, ``icu-limits``, the
shipped model) under ``bench/loadgen.py`` at ``--rate`` Observations/s with its acute events and
keeps the SQLite file.  The measurement then reads every Observation and DetectedIssue entry
with its body (as the consumer's ``recent`` hands them over from memory: each Observation as the
dict it was written from; ``--from-bytes``: the stored JSON, as a read of the log gives it), and runs the
consumer's own per-batch code (``AlertingConsumer._items`` then ``_evaluate`` in chunks of 32,
on a fresh ``Engine`` with the unit rule sets) over them, timing ``time.process_time``: the
consumer's CPU per Observation with no I/O, no event loop and no other load in the figure, so an
A/B on shared cores compares code, not neighbours.  Minimum of ``--repeat`` passes (each on a
fresh engine: the same windows, alerts and effects every pass).  Effects are hashed so a change
that alters what the engine raises shows up as a different ``effects_sha256``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import hashlib
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from fhir_server.storage import Store, make_engine  # noqa: E402
from fhir_server.storage import loads as fhir_loads  # noqa: E402


async def record(path: Path, rate: int, duration: float) -> None:
    from bench.alert_latency import acute_events, load_node
    from bench.loadgen import NUMERICS

    with tempfile.TemporaryDirectory(prefix="vg-consumer-cpu-") as tmp:
        beds = max(1, round(rate / NUMERICS))
        db_url, stats = await load_node(["gateway", "serve"], "node", rate, duration, Path(tmp),
                                        acute_events(beds, duration))
        shutil.copy(db_url.split(":///", 1)[1], path)
    print(json.dumps({"recorded": str(path), "load": stats.summary()}), file=sys.stderr)


async def load_changes(db: Path) -> tuple[Store, list[Any], dict[int, bytes]]:
    store = Store(make_engine(f"sqlite+aiosqlite:///{db}"))
    changes = await store.changes(0, limit=10**8, types=("Observation", "DetectedIssue"))
    bodies: dict[int, bytes] = {}
    for i in range(0, len(changes), 5000):
        bodies.update(await store.bodies([c.vid for c in changes[i:i + 5000]]))
    return store, changes, bodies


def fresh_consumer(store: Store) -> Any:
    from gateway.alerting.consumer import AlertingConsumer
    from gateway.alerting.models import ModelSource
    from gateway.alerting.units import UnitRulesets
    from inference import Engine, builtin_ruleset

    engine = Engine(builtin_ruleset("icu-limits"))
    model = ModelSource(Path("/nonexistent")).initial()  # the shipped model, as the bench node runs
    if model is not None:
        engine.model.swap(model)
    return AlertingConsumer(store, engine, units=UnitRulesets(store, engine, {"ICU": builtin_ruleset("icu-limits")}))


async def one_pass(store: Store, changes: list[Any], bodies: dict[int, Any], batch: int,
                   profiler: cProfile.Profile | None = None) -> tuple[float, int, str]:
    consumer = fresh_consumer(store)
    # device -> unit look-ups read the database once per device: done before the clock starts
    for c in changes:
        body = bodies.get(c.vid)
        if c.type == "Observation" and body:
            await consumer.units.observe(body if isinstance(body, dict) else orjson.loads(body))
    digest = hashlib.sha256()
    spent = 0.0
    observations = 0
    for i in range(0, len(changes), batch):
        part = changes[i:i + batch]
        gc.collect()
        if profiler is not None:
            profiler.enable()
        t0 = time.process_time()
        items = await consumer._items(part, bodies)
        out = []
        for j in range(0, len(items), consumer.chunk):
            out += consumer._evaluate(items[j:j + consumer.chunk])
        spent += time.process_time() - t0
        if profiler is not None:
            profiler.disable()
        observations += sum(1 for _, kind, _ in items if kind == "obs")
        for r in out:
            digest.update(orjson.dumps(r, option=orjson.OPT_SORT_KEYS))
    return spent, observations, digest.hexdigest()


def as_in_memory(changes: list[Any], bodies: dict[int, bytes]) -> dict[int, Any]:
    """The bodies as the node's consumer gets them from the notifier: each Observation as the dict
    it was written from (decimals as ``Decimal``, like the mappers'), other types as bytes."""
    out: dict[int, Any] = dict(bodies)
    for c in changes:
        body = bodies.get(c.vid)
        if c.type == "Observation" and body and c.op != "delete":
            out[c.vid] = fhir_loads(body)
    return out


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    store, changes, stored = await load_changes(args.db)
    bodies = stored if args.from_bytes else as_in_memory(changes, stored)
    try:
        runs = [await one_pass(store, changes, bodies, args.batch) for _ in range(args.repeat)]
        out: dict[str, Any] = {
            "db": str(args.db), "entries": len(changes), "observations": runs[0][1],
            "input": "stored bytes" if args.from_bytes else "written dicts (from memory)",
            "us_per_observation_min": round(min(r[0] for r in runs) / runs[0][1] * 1e6, 2),
            "us_per_observation_all": [round(r[0] / r[1] * 1e6, 2) for r in runs],
            "effects_sha256": sorted({r[2] for r in runs}),
            "load_average": [round(x, 2) for x in os.getloadavg()]}
        if args.profile:
            prof = cProfile.Profile()
            await one_pass(store, changes, bodies, args.batch, prof)
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(args.profile)
            print(text.getvalue(), file=sys.stderr)
        return out
    finally:
        await store.engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--db", type=Path, help="a SQLite file recorded with --record")
    p.add_argument("--record", type=Path, help="run the node under load and keep its database here")
    p.add_argument("--rate", type=int, default=5000)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--batch", type=int, default=500, help="change-log entries per consumer batch")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--from-bytes", action="store_true",
                   help="hand the consumer the stored JSON (its read path) instead of the written dicts")
    p.add_argument("--profile", type=int, default=0, help="print the top N functions by own time (cProfile)")
    args = p.parse_args()
    if args.record:
        asyncio.run(record(args.record, args.rate, args.duration))
        return
    if args.db is None:
        p.error("--db or --record")
    print(json.dumps(asyncio.run(measure(args)), indent=2))


if __name__ == "__main__":
    main()
