"""Migration 0004 backfills the series end-time rows that the indexer now writes (composite.py)."""

from __future__ import annotations

from sqlalchemy import select

from alembic import command
from fhir_server.search.composite import END_PREFIX
from fhir_server.storage import schema as t
from fhir_server.storage import upgrade
from fhir_server.storage.migrate import alembic_config

LOINC = "http://loinc.org"


def obs(patient: str, code: str, when: str) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}, {"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when}


async def _series_rows(store) -> list[tuple]:
    d = t.INDEX_TABLES["date"].c
    rows = await store.fetch(select(d.rid, d.param, d.lo, d.hi).where(d.param.like(END_PREFIX + "%"))
                             .order_by(d.rid, d.param))
    return [tuple(r) for r in rows]


async def test_backfill_matches_what_the_indexer_writes(store) -> None:
    async def job(tx) -> None:
        tx.put("Observation", "a", obs("p1", "8867-4", "2024-05-01T08:00:00Z"))
        tx.put("Observation", "b", obs("p2", "8310-5", "2024-05-01T09:00:00+02:00"))
        tx.put("Observation", "c", {"resourceType": "Observation", "status": "final",  # no time: no row
                                    "code": {"coding": [{"system": LOINC, "code": "1"}]},
                                    "subject": {"reference": "Patient/p1"}})

    await store.write(job)
    written = await _series_rows(store)
    assert [r[1] for r in written] == [f"{END_PREFIX}Patient/p1|{LOINC}|8867-4",
                                       f"{END_PREFIX}Patient/p2|{LOINC}|8310-5"]

    def down(conn) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")

    async with store.engine.begin() as conn:
        await conn.run_sync(down)
    assert await _series_rows(store) == []
    await upgrade(store.engine)
    assert await _series_rows(store) == written
