"""Benchmark: ``Observation?patient=X&code=Y&date=ge<1 hour before the end>&_count=20`` on SQLite.

Loads N vital-sign Observations (``--patients`` x ``--codes`` series, one reading a minute per
series) into a temporary SQLite file through ``extract_index`` and Core inserts, then times the
search through aiosqlite (the code's series read from ``series_member`` first, as the REST layer
does, included) and prints JSON with p50/p99 in milliseconds and the query plan.

    .venv/bin/python bench/search_plan.py 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, event
from sqlalchemy.ext.asyncio import create_async_engine

from fhir_server.search import build_select, extract_index, parse_search
from fhir_server.search.composite import composite_keys, end_param, series_of
from fhir_server.storage.schema import MEMBER_KIND, metadata

_BASE_US = 1_714_550_400_000_000  # 2024-05-01T08:00:00Z
_COLS = {
    "token": ("param", "system", "code", "text"),
    "string": ("param", "value", "exact"),
    "date": ("param", "lo", "hi"),
    "reference": ("param", "target_type", "target_id", "url"),
    "quantity": ("param", "system", "code", "value", "canon_code", "canon_value"),
    "number": ("param", "value"),
}


def _iso(us: int) -> str:
    t = time.gmtime(us // 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", t)


def observation(i: int, patients: int, codes: int) -> dict[str, Any]:
    series = i % (patients * codes)
    p, c = series // codes, series % codes
    minute = i // (patients * codes)
    return {
        "resourceType": "Observation", "id": f"o{i}", "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": f"code-{c}"},
                            {"system": "urn:iso:std:iso:11073:10101", "code": f"mdc-{c}"}]},
        "subject": {"reference": f"Patient/p{p}"},
        "effectiveDateTime": _iso(_BASE_US + minute * 60_000_000),
        "valueQuantity": {"value": 60 + i % 50, "unit": "/min",
                          "system": "http://unitsofmeasure.org", "code": "/min"},
    }


def load(db: Path, n: int, patients: int, codes: int) -> None:
    create_engine(f"sqlite:///{db}").dispose()
    eng = create_engine(f"sqlite:///{db}")
    metadata.create_all(eng)
    eng.dispose()
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    batch = 20_000
    for start in range(0, n, batch):
        _load_batch(con, range(start, min(n, start + batch)), patients, codes)
        con.commit()
    con.execute("ANALYZE")
    con.commit()
    con.close()


def _load_batch(con: sqlite3.Connection, ids: range, patients: int, codes: int) -> None:
    res, ver = [], []
    idx: dict[str, list[tuple[Any, ...]]] = {k: [] for k in _COLS}
    members: set[tuple[str, str]] = set()
    for i in ids:
        rid = i + 1
        obs = observation(i, patients, codes)
        res.append((rid, "Observation", obs["id"], 1, _BASE_US, 0, rid))
        ver.append((rid, rid, 1, _BASE_US, 0, "POST", orjson.dumps(obs)))
        for kind, rows in extract_index("Observation", obs).items():
            if kind == MEMBER_KIND:
                members.update((r["pkey"], r["set_param"]) for r in rows)
                continue
            cols = _COLS[kind]
            idx[kind] += [(rid, *(r[c] for c in cols)) for r in rows]
    con.executemany("INSERT INTO resource (rid,type,id,version,last_updated,deleted,vid) "
                    "VALUES (?,?,?,?,?,?,?)", res)
    con.executemany("INSERT INTO resource_version (vid,rid,version,last_updated,deleted,method,"
                    "body) VALUES (?,?,?,?,?,?,?)", ver)
    con.executemany("INSERT OR IGNORE INTO series_member (pkey, set_param) VALUES (?, ?)", sorted(members))
    for kind, rows in idx.items():
        if rows:
            cols = _COLS[kind]
            marks = ",".join("?" * (len(cols) + 1))
            con.executemany(f"INSERT INTO idx_{kind} (rid,{','.join(cols)}) VALUES ({marks})", rows)


async def measure(db: Path, n: int, patients: int, codes: int, runs: int,
                  cache_mib: int) -> dict[str, Any]:
    end_minute = n // (patients * codes)
    since = _iso(_BASE_US + (end_minute - 60) * 60_000_000)
    eng = create_async_engine(f"sqlite+aiosqlite:///{db}")

    @event.listens_for(eng.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")

    rng = random.Random(7)
    times, hits, plan = [], 0, ""
    async with eng.connect() as conn:
        for k in range(runs + 20):
            p, c = rng.randrange(patients), rng.randrange(codes)
            q = parse_search("Observation", [
                ("patient", f"p{p}"), ("code", f"http://loinc.org|code-{c}"),
                ("date", f"ge{since}"), ("_count", "20")], strict=True)
            t0 = time.perf_counter()
            combo = composite_keys(list(q.clauses))  # the code's series, as the REST layer reads them
            assert combo is not None
            member = (await conn.exec_driver_sql("SELECT pkey, set_param FROM series_member WHERE pkey = ?",
                                                 (end_param(combo[0][0]),))).all()
            stmt = build_select(replace(q, series=tuple(series_of(combo[0], [tuple(m) for m in member]))))
            resolve = time.perf_counter() - t0
            if k == 0:
                sql = str(stmt.compile(conn.sync_engine, compile_kwargs={"literal_binds": True}))
                rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)).all()
                plan = "\n".join(str(r[-1]) for r in rows)
            t0 = time.perf_counter()
            rows = (await conn.execute(stmt)).all()
            dt = time.perf_counter() - t0 + resolve
            if k >= 20:  # warm-up excluded
                times.append(dt * 1000)
                hits += len(rows)
    await eng.dispose()
    times.sort()
    return {"n": n, "runs": runs, "p50_ms": round(times[len(times) // 2], 3),
            "p99_ms": round(times[int(len(times) * 0.99) - 1], 3),
            "mean_rows": hits / runs, "cache_mib": cache_mib, "plan": plan}


def extract_cost_us(patients: int, codes: int) -> float:
    """Mean µs of ``extract_index`` for one vital-sign Observation (the ingest hot path)."""
    sample = [observation(i, patients, codes) for i in range(1000)]
    t0 = time.perf_counter()
    for _ in range(20):
        for o in sample:
            extract_index("Observation", o)
    return (time.perf_counter() - t0) / 20_000 * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=100_000)
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--codes", type=int, default=10)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--cache-mib", type=int, default=64, help="SQLite page cache per connection")
    ap.add_argument("--db", type=Path, help="reuse/keep this file instead of a temp file")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = a.db or Path(tmp) / "bench.sqlite"
        t0 = time.perf_counter()
        if not db.exists():
            load(db, a.n, a.patients, a.codes)
        load_s = time.perf_counter() - t0
        out = asyncio.run(measure(db, a.n, a.patients, a.codes, a.runs, a.cache_mib))
        out["load_s"] = round(load_s, 1)
        out["extract_us"] = round(extract_cost_us(a.patients, a.codes), 2)
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
