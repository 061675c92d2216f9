"""The MLLP listener's event-loop work per message, in process: prints one JSON object.

    .venv/bin/python bench/ingest_loop.py                 # stages and in-process ingest

``stages``: the pure steps a frame takes before its store job, timed one by one on the
messages ``bench/mllp_ingest.py`` sends (8 senders, 10-OBX ORU^R01, a new time each):
header and digest, parse, map, prepare (JSON and index rows, ``DeviceIndexer``) and the ACK.
Best of ``--repeats`` passes (CPU µs a message), so other jobs on the cores move it little.

``ingest``: the real ``Ingestor.ingest`` from 8 concurrent tasks on a real ``Store`` (a fresh
SQLite file): the event loop thread's CPU a message (``time.thread_time``: SQLite's own
threads are not in it), i.e. the listener's loop side without the sockets; with the writer
in a thread (``ingest``, the baseline) and in a child process (``ingest_writer_process``,
the default: the loop also pickles each flush and unpickles its outcome).

That the output of these steps stays byte for byte the same is
``tests/gateway/unit/test_ingest_golden.py``'s job.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from mllp_ingest import SENDERS, message  # noqa: E402

from fhir_server.storage import Store, make_engine, upgrade  # noqa: E402
from gateway.devices.index_rows import DeviceIndexer  # noqa: E402
from gateway.gc_policy import GcPauses, apply_gc_policy  # noqa: E402
from gateway.mllp.ingest import Ingestor  # noqa: E402
from gateway.mllp.wiring import mapping_context  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from mappers.hl7v2 import (  # noqa: E402
    accept_ack_code,
    check_acceptable,
    map_message,
    parse,
    read_header_lenient,
)


def _ingestor(store: Store) -> Ingestor:
    return Ingestor(store, mapping_context(Settings()))


def _store(path: str, writer_process: bool = False) -> Store:
    return Store(make_engine(f"sqlite+aiosqlite:///{path}"), writer_process=writer_process)


def _bench_messages(n: int, phase: str = "p") -> list[bytes]:
    return [message(i % SENDERS, i, phase) for i in range(n)]


def stages(ing: Ingestor, msgs: list[bytes], repeats: int) -> dict[str, float]:
    """Each step timed per message, nothing kept between messages (as in the listener, so
    the collector sees the listener's heap); best pass per step, µs a message."""
    ctx = ing.ctx
    names = ("header_digest", "parse", "map", "prepare", "ack")
    best = dict.fromkeys(names, float("inf"))
    clock = time.thread_time  # CPU, not wall: a pass that loses the core to another job stays comparable
    for _ in range(repeats):
        # a fresh indexer each pass: every message's time is new to its memo, as in a run
        indexer = DeviceIndexer(ing.store.indexer, vendor_rows=True)
        spent = [0.0] * len(names)
        for payload in msgs:
            t0 = clock()
            hashlib.sha256(payload).hexdigest()
            header = read_header_lenient(payload)
            assert header is not None
            check_acceptable(header, ctx)
            t1 = clock()
            msg = parse(payload)
            t2 = clock()
            result = map_message(msg, ctx)
            t3 = clock()
            for res in result.resources:  # as the ingestor: reference-only ones at flush time
                if f"{res['resourceType']}/{res['id']}" not in result.reference_only:
                    indexer.prepare(res)
            t4 = clock()
            ing._ack(header, accept_ack_code(header, "accept") or "CA", None)  # noqa: SLF001
            t5 = clock()
            for i, (a, b) in enumerate(((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5))):
                spent[i] += b - a
        for name, total in zip(names, spent, strict=True):
            best[name] = min(best[name], total / len(msgs) * 1e6)
    out = {k: round(v, 1) for k, v in best.items()}
    out["total"] = round(sum(best.values()), 1)
    return out


async def ingest(msgs: list[bytes], tmp: str, writer_process: bool = False) -> dict[str, Any]:
    """8 tasks, one message in flight each, through the real Ingestor and Store."""
    store = _store(f"{tmp}/ingest{int(writer_process)}.db", writer_process)
    await upgrade(store.engine)
    await store.start()
    ing = _ingestor(store)
    per_sender = [msgs[i::SENDERS] for i in range(SENDERS)]

    async def sender(items: list[bytes]) -> None:
        for m in items:
            result = await ing.ingest(m, "bench")
            assert result.status == "accepted", result

    warm = _bench_messages(SENDERS * 10, "w")
    await asyncio.gather(*(sender(warm[i::SENDERS]) for i in range(SENDERS)))
    gc.collect()
    gc.freeze()  # what the warm-up left
    with GcPauses() as pauses:
        cpu0, t0 = time.thread_time(), time.perf_counter()
        await asyncio.gather(*(sender(items) for items in per_sender))
        cpu, wall = time.thread_time() - cpu0, time.perf_counter() - t0
    await store.close()
    gc_ms = sum(sum(ms) for ms in pauses.ms.values())
    return {"loop_cpu_us_per_message": round(cpu / len(msgs) * 1e6, 1),
            # the collector's share of it: its pauses (wall, in the loop's thread)
            "gc_us_per_message": round(gc_ms / len(msgs) * 1e3, 1),
            "gc_collections": {g: len(ms) for g, ms in pauses.ms.items()},
            "wall_us_per_message": round(wall / len(msgs) * 1e6, 1), "messages": len(msgs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-ingest", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = _store(f"{tmp}/unused.db")  # stages need only its indexer
        msgs = _bench_messages(args.messages)
        gc.collect()
        apply_gc_policy(Settings())  # the listener's: start-up heap frozen, its thresholds
        result: dict[str, Any] = {"stages_us_per_message": stages(_ingestor(store), msgs, args.repeats)}
        if not args.skip_ingest:
            result["ingest"] = asyncio.run(ingest(msgs, tmp))
            result["ingest_writer_process"] = asyncio.run(ingest(msgs, tmp, writer_process=True))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
