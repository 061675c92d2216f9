"""MLLP ingest benchmark: prints one JSON object.

    .venv/bin/python bench/mllp_ingest.py                  # 120 s per load phase, SQLite
    .venv/bin/python bench/mllp_ingest.py --duration 10    # smoke run
    .venv/bin/python bench/mllp_ingest.py --database-url postgresql://postgres@127.0.0.1/bench
        # (that database is dropped and created afresh)

The listener runs as its own process (``python -m gateway.mllp``) on a fresh database;
this process is the 8 senders, one 10-OBX ORU^R01 in flight each (each message has new
control ID and new effective times, so every Observation is a new resource).

- ``throughput``: closed loop for ``--duration`` s; messages and Observations ACKed per
  second, then checked against the database (every ACKed message must be there).
- ``latency``: open loop at each ``--rate`` Observations/s (default 5,000 then 1,000; spread
  over the senders, still one in flight each) for ``--duration`` s; ACK latency from send to
  ACK, p50/p99/max, and p99 from the scheduled send time (a sender that fell behind counts
  its wait: no coordinated omission).
- ``writer_process`` (SQLite, unless ``--no-writer-process``): the same two phases on a
  fresh database with the writer's connection in a child process
  (``VITALGATE_WRITER_PROCESS=1``, storage/writer_process.py: the default since the
  eleventh round), against the main figures' layout, the writer in a thread of the listener
  (``VITALGATE_WRITER_PROCESS=0``). The CPU figures count the listener and its children (the
  writer's zygote and the writer). It has its own ceiling at its own mean group size (two
  groups in flight make its groups about half as large).
- ``parse``: python-hl7, hl7apy and our tokenizer, parse only, on the same messages.
- ``ceiling``: raw sqlite3 ``executemany`` writing the rows the store writes for the same
  messages (resource, version, index, change log, inbox; the ORU's Patient and Locations
  only the first time, as ``if_absent`` does) in transactions of the mean group size
  measured in the throughput phase, synchronous=FULL, WAL: the baseline the store is
  compared with, measured in the same run. ``..._group_64``: the same in groups of 64;
  ``..._without_index_rows``: the same commits without the search-index rows (``idx_*``),
  which shows how much of the database's work the search index is.

"Observations" counts OBX segments (10 a message); the store holds 8 Observation resources a
message, since NIBP systolic / diastolic / mean become one panel. Machine: 2 cores (the
listener process, the senders and PostgreSQL share them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_server.storage import Store, make_engine, upgrade  # noqa: E402
from gateway.mllp.client import MllpClient  # noqa: E402

SENDERS = 8
OBX = [  # (MDC code, reference id, value, UCUM)
    ("147842", "MDC_ECG_HEART_RATE", "72", "/min"),
    ("150456", "MDC_PULS_OXIM_SAT_O2", "97", "%"),
    ("151562", "MDC_RESP_RATE", "16", "/min"),
    ("150344", "MDC_TEMP", "36.9", "Cel"),
    ("150021", "MDC_PRESS_BLD_NONINV_SYS", "120", "mm[Hg]"),
    ("150022", "MDC_PRESS_BLD_NONINV_DIA", "80", "mm[Hg]"),
    ("150023", "MDC_PRESS_BLD_NONINV_MEAN", "93", "mm[Hg]"),
    ("149530", "MDC_PULS_OXIM_PULS_RATE", "71", "/min"),
    ("151708", "MDC_AWAY_CO2_ET", "38", "mm[Hg]"),
    ("150087", "MDC_PRESS_BLD_VEN_CENT_MEAN", "8", "mm[Hg]"),
]


def message(sender: int, n: int, phase: str = "t") -> bytes:
    """A 10-OBX IHE PCD-01 style ORU^R01; OBX-14 moves one second per message."""
    t = 1_700_000_000 + n
    ts = time.strftime("%Y%m%d%H%M%S", time.gmtime(t)) + "+0000"
    lines = [
        f"MSH|^~\\&|BENCH{sender}^{sender:016X}^EUI-64|ICU|VG|HOSP|{ts}||ORU^R01^ORU_R01|"
        f"{phase}{sender}-{n}|P|2.6",
        f"PID|||BM{sender:04d}^^^HOSP^MR||BENCH^PATIENT{sender}",
        f"PV1||I|ICU^1^{sender}",
        f"OBR|1|||182777000^monitoring of patient^SCT|||{ts}",
    ]
    for i, (code, ref, value, unit) in enumerate(OBX, 1):
        lines.append(f"OBX|{i}|NM|{code}^{ref}^MDC|1.1.1.{i}|{value}|{unit}^{unit}^UCUM|||||R|||{ts}")
    return ("\r".join(lines) + "\r").encode()


async def start_server(db_url: str, writer_process: bool = False) -> tuple[asyncio.subprocess.Process, int]:
    env = {**os.environ, "VITALGATE_DATABASE_URL": db_url, "VITALGATE_LOG_LEVEL": "WARNING",
           "VITALGATE_WRITER_PROCESS": "1" if writer_process else "0"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.mllp", "--port", "0", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = (await proc.stdout.readline()).decode()
    if not line.startswith("mllp listening on "):
        raise RuntimeError(f"listener did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


async def closed_loop(port: int, duration: float) -> tuple[int, float]:
    deadline = time.perf_counter() + duration
    counts = [0] * SENDERS

    async def sender(i: int) -> None:
        async with MllpClient("127.0.0.1", port) as c:
            while time.perf_counter() < deadline:
                ack = await c.call(message(i, counts[i]))
                assert ack is not None and b"|CA|" not in ack and b"MSA|AA|" in ack, ack
                counts[i] += 1

    start = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(SENDERS)))
    return sum(counts), time.perf_counter() - start


async def open_loop(port: int, duration: float, rate_obs: float,
                    base: int) -> tuple[list[float], list[float]]:
    """(send-to-ACK latencies, due-to-ACK latencies); the second counts the wait of a sender
    that fell behind its schedule (no coordinated omission)."""
    per_sender = rate_obs / len(OBX) / SENDERS  # messages/s per sender
    service: list[float] = []
    scheduled: list[float] = []

    async def sender(i: int) -> None:
        async with MllpClient("127.0.0.1", port) as c:
            start = time.perf_counter()
            n = 0
            while (due := start + n / per_sender) < start + duration:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = time.perf_counter()
                ack = await c.call(message(i, base + n, "l"))
                t1 = time.perf_counter()
                service.append(t1 - t0)
                scheduled.append(t1 - due)
                assert ack is not None and b"MSA|AA|" in ack
                n += 1
                if time.perf_counter() > start + duration + 5:
                    break  # far behind schedule: the offered rate is not sustainable

    await asyncio.gather(*(sender(i) for i in range(SENDERS)))
    return service, scheduled


async def stored_counts(db_url: str) -> tuple[int, int, int]:
    """(accepted inbox rows, Observations, transactions) read back from the database."""
    from sqlalchemy import func, select

    from fhir_server.storage import schema as t
    from gateway.inbox import inbox

    store = Store(make_engine(db_url))
    try:
        acc = (await store.fetch(select(func.count()).select_from(inbox)
                                 .where(inbox.c.status == "accepted"))).scalar()
        obs = (await store.fetch(select(func.count()).select_from(t.resource)
                                 .where(t.resource.c.type == "Observation"))).scalar()
        txs = (await store.fetch(select(func.count(func.distinct(t.change_log.c.ts))))).scalar()
        return int(acc), int(obs), int(txs)
    finally:
        await store.engine.dispose()


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0.0 elsewhere)."""
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of ``pid`` and each of its live descendants (the writer's zygote and writer)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    tree, grew = {pid}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    return {p: _cpu_s(p) for p in tree}


def _cpu_delta(before: dict[int, float], after: dict[int, float], main: int) -> tuple[float, float]:
    """(the listener's CPU, its children's) between two ``_tree_cpu_s`` readings."""
    own = after.get(main, 0.0) - before.get(main, 0.0)
    children = sum(v - before.get(p, 0.0) for p, v in after.items() if p != main)
    return own, children


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def parse_bench(msgs: list[bytes]) -> dict[str, float]:
    import hl7
    from hl7apy.parser import parse_message

    from mappers.hl7v2 import parse

    texts = [m.decode() for m in msgs]
    out: dict[str, float] = {}
    for name, fn, data in (
        ("vitalgate_tokenizer_us", parse, msgs),
        ("python_hl7_us", hl7.parse, texts),
        ("hl7apy_us", lambda s: parse_message(s, find_groups=False), texts[:200]),  # ~20 ms each
    ):
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            for d in data:
                fn(d)
            runs.append((time.perf_counter() - t0) / len(data) * 1e6)
        out[name] = round(min(runs), 2)
    out["speedup_vs_python_hl7"] = round(out["python_hl7_us"] / out["vitalgate_tokenizer_us"], 1)
    return out


def _ceiling_rows(msgs: list[bytes], mapped: list[list[dict[str, Any]]],
                  group: int) -> list[list[tuple[str, list[dict[str, Any]]]]]:
    """Per transaction: (INSERT statement, rows) for every table the store writes."""
    from fhir_server.search import extract_index
    from fhir_server.storage import schema as t
    from fhir_server.storage.fhirjson import dumps

    key = 0
    batches = []
    for start in range(0, len(msgs), group):
        tables: dict[str, list[dict[str, Any]]] = {}
        for m, resources in zip(msgs[start : start + group], mapped[start : start + group],
                                strict=True):
            for res in resources:  # already without the reference-only ones stored before
                key += 1
                tables.setdefault("resource", []).append(
                    {"rid": key, "type": res["resourceType"], "id": res["id"],
                     "version": 1, "last_updated": key, "deleted": False, "vid": key})
                tables.setdefault("resource_version", []).append(
                    {"vid": key, "rid": key, "version": 1, "last_updated": key, "deleted": False,
                     "method": "PUT", "body": dumps(res)})
                for kind, rows in extract_index(res["resourceType"], res).items():
                    if kind == t.MEMBER_KIND:
                        continue  # written once a patient and code (the store's steady state: none)
                    tables.setdefault(t.INDEX_TABLES[kind].name, []).extend(
                        {**r, "rid": key} for r in rows)
                tables.setdefault("change_log", []).append(
                    {"seq": key, "rid": key, "vid": key, "type": res["resourceType"],
                     "id": res["id"], "version": 1, "op": "create", "ts": key})
            tables.setdefault("inbox", []).append(
                {"received_at": key, "peer": "127.0.0.1:1", "sending_app": "B",
                 "sending_facility": "I", "control_id": str(key), "message_type": "ORU^R01",
                 "payload_hash": "0" * 64, "status": "accepted", "reason": None,
                 "patient_key": "k", "payload": m, "ack": m[:120]})
        batch = []
        for name, rows in tables.items():
            cols = sorted({c for r in rows for c in r})
            sql = (f"INSERT INTO {name} ({', '.join(cols)}) "
                   f"VALUES ({', '.join(':' + c for c in cols)})")
            batch.append((sql, [{c: r.get(c) for c in cols} for r in rows]))
        batches.append(batch)
    return batches


def without_rows(batches: list[list[tuple[str, list[dict[str, Any]]]]],
                 leave_out: Callable[[str, dict[str, Any]], bool]
                 ) -> tuple[list[list[tuple[str, list[dict[str, Any]]]]], int]:
    """The same commits without the rows ``leave_out(table, row)`` picks, and how many those are."""
    out = []
    dropped = 0
    for tables in batches:
        kept = []
        for sql, rows in tables:
            table = sql.split()[2]  # INSERT INTO <table> (...)
            rest = [r for r in rows if not leave_out(table, r)]
            dropped += len(rows) - len(rest)
            if rest:
                kept.append((sql, rest))
        out.append(kept)
    return out, dropped


def _replay_db(extra_pragmas: tuple[str, ...] = ()) -> tuple[sqlite3.Connection, Path]:
    """A fresh migrated SQLite file, opened with the store's own settings."""
    from fhir_server.storage.engine import SQLITE_PRAGMAS

    path = Path(tempfile.mkdtemp()) / "ceiling.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in (*SQLITE_PRAGMAS, *extra_pragmas):  # WAL, synchronous=FULL, cache
        db.execute(f"PRAGMA {pragma}")
    return db, path


def _replay(db: sqlite3.Connection, batches: list[list[tuple[str, list[dict[str, Any]]]]]) -> float:
    t0 = time.perf_counter()
    for tables in batches:
        db.execute("BEGIN")
        for sql, rows in tables:
            db.executemany(sql, rows)
        db.execute("COMMIT")
    return time.perf_counter() - t0


def _mapped(msgs: list[bytes]) -> list[list[dict[str, Any]]]:
    """What the store writes per message: the ORU's Patient / Location only when absent."""
    from mappers.hl7v2 import MappingContext, map_message, parse

    ctx = MappingContext()
    mapped: list[list[dict[str, Any]]] = []
    seen: set[str] = set()
    for m in msgs:
        result = map_message(parse(m), ctx)
        refs = {f"{r['resourceType']}/{r['id']}" for r in result.resources}
        mapped.append([r for r in result.resources
                       if f"{r['resourceType']}/{r['id']}" not in (result.reference_only & seen)])
        seen |= refs & result.reference_only
    return mapped


def ceiling(msgs: list[bytes], group: int, *, index_rows: bool = True) -> dict[str, float]:
    """Raw sqlite3 executemany of the store's rows for ``msgs``, ``group`` messages a commit;
    ``index_rows=False`` leaves out the search-index tables (``idx_*``): their share of the cost."""
    batches = _ceiling_rows(msgs, _mapped(msgs), group)  # built before the clock starts
    if not index_rows:
        batches, _ = without_rows(batches, lambda table, _row: table.startswith("idx_"))
    db, _ = _replay_db()
    elapsed = _replay(db, batches)
    db.close()
    return {"group_size": group, "messages_per_s": round(len(msgs) / elapsed),
            "observations_per_s": round(len(msgs) * len(OBX) / elapsed)}


def wal_pages(msgs: list[bytes], group: int) -> dict[str, float]:
    """Pages each commit appends to the WAL when the ceiling's rows are replayed (no
    checkpoint, so every frame stays in the file): the disk writes a commit costs."""
    batches = _ceiling_rows(msgs, _mapped(msgs), group)
    db, path = _replay_db(("wal_autocheckpoint=0",))
    page = db.execute("PRAGMA page_size").fetchone()[0]
    wal = Path(f"{path}-wal")
    skip = len(batches) // 2  # the second half: the indexes already hold the first
    _replay(db, batches[:skip])
    before = wal.stat().st_size
    _replay(db, batches[skip:])
    frames = (wal.stat().st_size - before) / (page + 24)
    db.close()
    return {"group_size": group, "messages": len(msgs),
            "pages_per_commit": round(frames / (len(batches) - skip)),
            "pages_per_message": round(frames / (len(batches) - skip) / group, 1)}


async def _migrate(url: str) -> None:
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()


def _latency(rate: float, latencies: list[float], scheduled: list[float], elapsed: float) -> dict[str, Any]:
    return {
        "offered_observations_per_s": rate, "messages": len(latencies),
        "achieved_observations_per_s": round(len(latencies) * len(OBX) / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1e3, 2),
        "p99_ms": round(pct(latencies, 0.99) * 1e3, 2),
        "max_ms": round(max(latencies) * 1e3, 2),
        "p99_from_schedule_ms": round(pct(scheduled, 0.99) * 1e3, 2),
    }


async def fresh_postgres(db_url: str) -> None:
    """Drop and create the named PostgreSQL database: every run starts empty."""
    import asyncpg

    base, name = db_url.replace("+asyncpg", "").rsplit("/", 1)
    admin = await asyncpg.connect(f"{base}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    db_url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    result = await run_phases(args, db_url, writer_process=False)
    if not db_url.startswith("postgresql") and not args.no_writer_process:
        alt = await run_phases(args, f"sqlite:///{tempfile.mkdtemp()}/bench.db", writer_process=True)
        result["writer_process"] = {k: alt[k] for k in ("machine", "throughput", "stored", "latency")}
        result["writer_process_vs_thread_obs_per_s"] = round(
            alt["throughput"]["observations_per_s"] / max(result["throughput"]["observations_per_s"], 1), 2)
    return result


async def run_phases(args: argparse.Namespace, db_url: str, *, writer_process: bool) -> dict[str, Any]:
    if db_url.startswith("postgresql"):
        await fresh_postgres(db_url)
    load_start = os.getloadavg()[0]
    proc, port = await start_server(db_url, writer_process)
    latency: list[dict[str, Any]] = []
    acked_in_latency = 0
    try:
        await asyncio.sleep(0.5)  # the writer's zygote and child are up (the listener printed its port)
        cpu0 = _tree_cpu_s(proc.pid)
        sent, elapsed = await closed_loop(port, args.duration)
        own, children = _cpu_delta(cpu0, _tree_cpu_s(proc.pid), proc.pid)
        for k, rate in enumerate(args.rates):
            t0 = time.perf_counter()
            latencies, scheduled = await open_loop(port, args.duration, rate, 10_000_000 * (k + 1))
            latency.append(_latency(rate, latencies, scheduled, time.perf_counter() - t0))
            acked_in_latency += len(latencies)
    finally:
        proc.terminate()
        await proc.wait()
    from gateway.settings import normalise_db_url

    accepted, observations, txs = await stored_counts(normalise_db_url(db_url))
    total = sent + acked_in_latency
    return {
        "database": db_url.split(":", 1)[0],
        "writer": "process" if writer_process and not db_url.startswith("postgresql") else "thread",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    # the cores are shared: a load above ~2 means other work competed
                    "loadavg_1min_start": round(load_start, 2),
                    "loadavg_1min_end": round(os.getloadavg()[0], 2)},
        "senders": SENDERS, "obx_per_message": len(OBX),
        "observation_resources_per_message": 8,  # NIBP sys/dia/mean become one panel
        "duration_s": args.duration,
        "throughput": {
            "messages_acked": sent, "messages_per_s": round(sent / elapsed),
            "observations_per_s": round(sent * len(OBX) / elapsed),
            # user+system CPU over the closed loop: steadier than Obs/s when other jobs share
            # the cores; the listener's process, then its children (the SQLite writer)
            "listener_cpu_us_per_message": round(own / max(sent, 1) * 1e6),
            "writer_process_cpu_us_per_message": round(children / max(sent, 1) * 1e6),
        },
        "stored": {"accepted_messages": accepted, "observation_resources": observations,
                   "acked_total": total, "all_acked_stored": accepted >= total,
                   "transactions": txs, "mean_group_messages": round(accepted / max(txs, 1), 1)},
        "latency": latency,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--duration", type=float, default=120.0, help="seconds per load phase")
    p.add_argument("--rate", default="5000,1000",
                   help="offered Observations/s for the latency phases, comma separated")
    p.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    p.add_argument("--parse-messages", type=int, default=2000)
    p.add_argument("--no-writer-process", action="store_true",
                   help="skip the writer-in-a-child-process phases (SQLite)")
    args = p.parse_args()
    args.rates = [float(r) for r in args.rate.split(",") if r.strip()]
    result = asyncio.run(run(args))
    msgs = [message(i % SENDERS, i, "p") for i in range(args.parse_messages)]
    result["parse"] = parse_bench(msgs)
    group = max(1, round(result["stored"]["mean_group_messages"]))
    result["ceiling_sqlite_executemany"] = ceiling(msgs, group)
    result["ceiling_sqlite_executemany_group_64"] = ceiling(msgs, 64)  # what bigger groups allow
    # the same commits without the search-index rows: how much of the database's work they are
    result["ceiling_sqlite_executemany_without_index_rows"] = ceiling(msgs, group, index_rows=False)
    if "writer_process" in result:  # its groups are smaller (two in flight): its own baseline
        alt_group = max(1, round(result["writer_process"]["stored"]["mean_group_messages"]))
        result["writer_process"]["ceiling_sqlite_executemany"] = ceiling(msgs, alt_group)
    result["wal_pages_per_commit"] = wal_pages(msgs, group)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
