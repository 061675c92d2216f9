"""Benchmark: ``Observation?patient=X&code=Y&date=ge<1 hour before the end>&_count=20`` on SQLite.

Loads N vital-sign Observations (``--patients`` x ``--codes`` series, one reading a minute per
series) into a temporary SQLite file through ``extract_index`` and Core inserts, then times the
search through aiosqlite (the code's series read from ``series_member`` first, as the REST layer
does, included) and prints JSON with p50/p99 in milliseconds and the query plan.

    .venv/bin/python bench/search_plan.py 1000000
    .venv/bin/python bench/search_plan.py 100000 --sort --runs 20   # _sort=[-]date pages, both databases
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


# ---- --sort: a page of ``Observation?_sort=[-]date&_count=10`` on SQLite and PostgreSQL ------------

_TABLES = ("resource", "resource_version", "series_member", *(f"idx_{k}" for k in _COLS))


async def _copy_to_postgresql(db: Path, url: str) -> None:
    """The loaded SQLite tables into a fresh, migrated PostgreSQL database (COPY)."""
    import asyncpg

    from fhir_server.storage import make_engine, upgrade

    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    con = sqlite3.connect(db)
    pg = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for table in _TABLES:
            cur = con.execute(f"SELECT * FROM {table}")
            cols = [c[0] for c in cur.description]
            while rows := cur.fetchmany(50_000):
                if table in ("resource", "resource_version"):
                    rows = [tuple(bool(v) if c == "deleted" else v for c, v in zip(cols, r, strict=True))
                            for r in rows]
                await pg.copy_records_to_table(table, records=rows, columns=cols)
        await pg.execute("ANALYZE")
    finally:
        await pg.close()
        con.close()


async def _sort_pages(url: str, runs: int) -> dict[str, Any]:
    from fhir_server.storage import make_engine

    eng = make_engine(url)  # the server's: its pragmas and server settings
    out: dict[str, Any] = {}
    async with eng.connect() as conn:
        for sort in ("-date", "date"):
            for offset in (0, 1000, 9000):
                q = parse_search("Observation", [("_sort", sort), ("_count", "10"), ("_offset", str(offset))],
                                 strict=True)
                ms: dict[str, float] = {}
                pages = []
                for name, index_order in (("old", False), ("new", True)):
                    stmt = build_select(q, index_order=index_order)
                    times = []
                    for k in range(runs + 2):
                        t0 = time.perf_counter()
                        rows = (await conn.execute(stmt)).all()
                        if k >= 2:
                            times.append((time.perf_counter() - t0) * 1000)
                    pages.append([r.rid for r in rows])
                    ms[name] = round(sorted(times)[len(times) // 2], 3)
                assert pages[0] == pages[1], (sort, offset, pages)
                out[f"_sort={sort}&_count=10&_offset={offset}"] = {
                    "old_p50_ms": ms["old"], "new_p50_ms": ms["new"], "speedup": round(ms["old"] / ms["new"], 1)}
    await eng.dispose()
    return out


async def _postgresql_sort(db: Path, runs: int) -> dict[str, Any]:
    import asyncpg

    name = f"bench_sort_{int(time.time())}"
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    try:
        await _copy_to_postgresql(db, url)
        return await _sort_pages(url, runs)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def sort_bench(db: Path, n: int, runs: int) -> dict[str, Any]:
    """Old (sort every Observation) against new (index order) plan, the same page asserted."""
    return {"n": n, "runs": runs, "sqlite": asyncio.run(_sort_pages(f"sqlite+aiosqlite:///{db}", runs)),
            "postgresql": asyncio.run(_postgresql_sort(db, runs))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=100_000)
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--codes", type=int, default=10)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--cache-mib", type=int, default=64, help="SQLite page cache per connection")
    ap.add_argument("--db", type=Path, help="reuse/keep this file instead of a temp file")
    ap.add_argument("--sort", action="store_true",
                    help="time _sort=[-]date pages (old plan as baseline) on SQLite and PostgreSQL instead")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = a.db or Path(tmp) / "bench.sqlite"
        t0 = time.perf_counter()
        if not db.exists():
            load(db, a.n, a.patients, a.codes)
        load_s = time.perf_counter() - t0
        if a.sort:
            print(json.dumps(sort_bench(db, a.n, a.runs), indent=1))
            return
        out = asyncio.run(measure(db, a.n, a.patients, a.codes, a.runs, a.cache_mib))
        out["load_s"] = round(load_s, 1)
        out["extract_us"] = round(extract_cost_us(a.patients, a.codes), 2)
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
