"""Migration 0004 backfills the series end-time rows that the indexer now writes (composite.py);
0005 re-keys both hidden series rows to the shorter key, and back. The key token rows exist
from 0004 to 0007 (0008 removes them), so the 0005 test runs below 0008."""

from __future__ import annotations

from sqlalchemy import select

from alembic import command
from fhir_server.search.composite import END_PREFIX, UNDATED, composite_key
from fhir_server.storage import schema as t
from fhir_server.storage import upgrade
from fhir_server.storage.migrate import alembic_config

LOINC = "http://loinc.org"
COMPOSITE_PARAM = "Observation.patient-code"  # the key token rows, 0004 to 0007
# with a uuid patient id, this system's series key was too long for an end-time row before
# 0005, and now fits
LONG_SYSTEM = "urn:vendor:" + "x" * 49
PID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def obs(patient: str, code: str, when: str) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}, {"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when}


async def _series_rows(store) -> list[tuple]:
    d = t.INDEX_TABLES["date"].c
    rows = await store.fetch(select(d.rid, d.param, d.lo, d.hi).where(d.param.like(END_PREFIX + "%"))
                             .order_by(d.rid, d.param))
    return [tuple(r) for r in rows]


async def _composite_keys(store) -> list[tuple]:
    tok = t.INDEX_TABLES["token"].c
    rows = await store.fetch(select(tok.rid, tok.code).where(tok.param == COMPOSITE_PARAM)
                             .order_by(tok.rid, tok.code))
    return [tuple(r) for r in rows]


async def _migrate(store, revision: str, *, up: bool = False) -> None:
    """Downgrade (or with ``up``, upgrade) the store's database to ``revision``."""
    def run(conn) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(cfg, revision)

    async with store.engine.begin() as conn:
        await conn.run_sync(run)


async def test_backfill_matches_what_the_indexer_writes(store) -> None:
    async def job(tx) -> None:
        tx.put("Observation", "a", obs("p1", "8867-4", "2024-05-01T08:00:00Z"))
        tx.put("Observation", "b", obs("p2", "8310-5", "2024-05-01T09:00:00+02:00"))
        tx.put("Observation", "c", {"resourceType": "Observation", "status": "final",  # no time: UNDATED
                                    "code": {"coding": [{"system": LOINC, "code": "1"}]},
                                    "subject": {"reference": "Patient/p1"}})

    await store.write(job)
    written = await _series_rows(store)
    assert [r[1] for r in written] == [END_PREFIX + composite_key("p1", LOINC, "8867-4"),
                                       END_PREFIX + composite_key("p2", LOINC, "8310-5"),
                                       END_PREFIX + composite_key("p1", LOINC, "1")]
    assert written[2][2:] == (UNDATED, UNDATED)

    await _migrate(store, "0003")
    assert await _series_rows(store) == []
    await upgrade(store.engine)
    assert await _series_rows(store) == written


async def test_0005_rekeys_both_series_rows_and_back(store) -> None:
    async def job(tx) -> None:
        tx.put("Observation", "a", obs(PID, "8867-4", "2024-05-01T08:00:00Z"))
        long = obs(PID, "v1", "2024-05-01T08:00:01Z")
        long["code"]["coding"] = [{"system": LONG_SYSTEM, "code": "v1"}]
        tx.put("Observation", "b", long)

    await store.write(job)
    await _migrate(store, "0007")
    keys, series = await _composite_keys(store), await _series_rows(store)
    new = [composite_key(PID, LOINC, "8867-4"), composite_key(PID, LONG_SYSTEM, "v1")]
    assert [k for _, k in keys] == [new[0], new[0], new[1]]  # a's code has its coding twice
    assert [p for _, p, *_ in series] == [END_PREFIX + k for k in new]

    await _migrate(store, "0004")
    old_keys = [f"Patient/{PID}|{LOINC}|8867-4", f"Patient/{PID}|{LONG_SYSTEM}|v1"]
    assert [k for _, k in await _composite_keys(store)] == [old_keys[0], old_keys[0], old_keys[1]]
    old = await _series_rows(store)  # the long key had no room for its end-time row
    assert [p for _, p, *_ in old] == [END_PREFIX + old_keys[0]]
    await _migrate(store, "0007", up=True)
    assert await _composite_keys(store) == keys and await _series_rows(store) == series
    await upgrade(store.engine)
    assert await _composite_keys(store) == [] and await _series_rows(store) == series
