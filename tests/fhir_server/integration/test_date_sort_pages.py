"""``_sort=[-]<date>`` alone reads its page in index order (sql_stream.date_sorted): every page
equals the generic plan's (``build_select(..., index_order=False)``, which sorts every match).

Random index rows on a migrated database (ix_date_hi comes from migration 0010): several date
rows per resource, equal times across resources (ties by rid), resources without a date row,
deleted ones, series end-time rows and other resource types sharing ``idx_date``.
"""

from __future__ import annotations

import random

import orjson
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir_server.search import build_select, parse_search
from fhir_server.storage import Store, make_engine, upgrade
from fhir_server.storage.schema import INDEX_TABLES, resource, resource_version

T0 = 1_714_550_400_000_000
N = 240


async def _seed(conn: AsyncConnection, rng: random.Random) -> None:
    res, ver, dates = [], [], []
    for rid in range(1, N + 1):
        rt = "Observation" if rid % 9 else "Patient"
        body = orjson.dumps({"resourceType": rt, "id": f"r{rid}"})
        res.append({"rid": rid, "type": rt, "id": f"r{rid}", "version": 1, "last_updated": T0,
                    "deleted": rng.random() < 0.1, "vid": rid})
        ver.append({"vid": rid, "rid": rid, "version": 1, "last_updated": T0, "deleted": False,
                    "method": "PUT", "body": body})
        param = "Observation.date" if rt == "Observation" else "Patient.birthdate"
        for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):  # ~1/6 have no date row
            lo = T0 + rng.randrange(20) * 60_000_000  # few distinct times: many ties
            hi = lo + rng.choice([0, 999_999, 3_600_000_000, 86_400_000_000])
            dates.append({"rid": rid, "param": param, "lo": lo, "hi": hi})
            if rng.random() < 0.2:  # the same range twice in one resource: listed once
                dates.append({"rid": rid, "param": param, "lo": lo, "hi": hi})
        if rt == "Observation" and rng.random() < 0.5:  # a series end-time row: never sorted on
            t = T0 + rng.randrange(40) * 60_000_000
            dates.append({"rid": rid, "param": "Obs.pce|k", "lo": t, "hi": t})
    await conn.execute(insert(resource), res)
    await conn.execute(insert(resource_version), ver)
    await conn.execute(insert(INDEX_TABLES["date"]), dates)


async def _page(conn: AsyncConnection, rt: str, sort: str, count: int, offset: int,
                snapshot: int | None, index_order: bool) -> list[int]:
    q = parse_search(rt, [("_sort", sort), ("_count", str(count))], strict=True).with_page(offset, snapshot)
    return [r.rid for r in (await conn.execute(build_select(q, index_order=index_order))).all()]


async def test_date_sorted_pages_equal_the_generic_plan(store: Store) -> None:
    async with store.engine.connect() as conn:  # the fixture's fresh (or emptied) migrated database
        trans = await conn.begin()
        await _seed(conn, random.Random(20261129))
        checked = 0
        for rt, sort in [("Observation", "date"), ("Observation", "-date"),
                         ("Patient", "birthdate"), ("Patient", "-birthdate")]:
            for count in (1, 7, 50):
                for snapshot in (None, N // 2):
                    for offset in range(0, N + count, count):
                        args = (conn, rt, sort, count, offset, snapshot)
                        new = await _page(*args, index_order=True)
                        assert new == await _page(*args, index_order=False), (rt, sort, count, offset, snapshot)
                        checked += len(new)
        assert checked > 2 * N  # the pages were not all empty
        await trans.rollback()


_STATS_100K = [("idx_date", "ix_date_hi", "100000 100000 1000 1"), ("idx_date", "ix_date_rid_cover", "200000 2 1 1 1"),
               ("idx_date", "ix_date_lo", "200000 200 2 1"),
               ("resource", "ix_resource_type_updated", "100000 100000 100000"),
               ("resource", "sqlite_autoindex_resource_1", "100000 100000 1")]


# analyzed: with ANALYZE statistics SQLite's planner preferred ix_date_lo for the descending
# walk and sorted every row, hence INDEXED BY (sql_stream._IndexedAlias)
@pytest.mark.parametrize("analyzed", [False, True], ids=["no-statistics", "analyzed"])
async def test_sqlite_plan_walks_the_date_index(tmp_path, analyzed: bool) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/plan.db")
    await upgrade(engine)
    try:
        async with engine.connect() as conn:
            if analyzed:  # the statistics ANALYZE gave at 100,000 Observations (bench/search_plan.py)
                await _seed(conn, random.Random(7))
                await conn.exec_driver_sql("ANALYZE")
                await conn.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl IN ('idx_date', 'resource')")
                for row in _STATS_100K:
                    await conn.exec_driver_sql("INSERT INTO sqlite_stat1 VALUES (?, ?, ?)", row)
                await conn.exec_driver_sql("ANALYZE sqlite_schema")  # reloads them
                await conn.commit()
            for sort, index in (("-date", "ix_date_hi (param=?)"), ("date", "ix_date_lo (param=?)")):
                q = parse_search("Observation", [("_sort", sort), ("_count", "10")], strict=True)
                sql = str(build_select(q).compile(conn.sync_connection, compile_kwargs={"literal_binds": True}))
                plan = [r[-1] for r in (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)).all()]
                assert f"SEARCH d USING COVERING INDEX {index}" in plan, plan
                # the undated resources are behind the one-row gate: never a scan of resource first
                u = next(i for i, s in enumerate(plan) if s.startswith("SEARCH u "))
                assert plan.index("SCAN gate") < u, plan
                assert not any(s.startswith("SCAN") and ("resource" in s or "idx_" in s) for s in plan), plan
    finally:
        await engine.dispose()


@pytest.mark.parametrize("params", [
    [("_sort", "-date"), ("status", "final")],  # a clause: the generic plans
    [("_sort", "-date,_id")],
    [("_sort", "-_lastUpdated")],
    [("_sort", "-date"), ("_offset", "20000")],  # deep: sorting all is cheaper than the walk
])
def test_other_searches_keep_their_plans(params: list[tuple[str, str]]) -> None:
    assert "WITH dated" not in str(build_select(parse_search("Observation", params, strict=True)))
