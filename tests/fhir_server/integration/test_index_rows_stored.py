"""The index rows a flush stores are exactly the indexer's (SQLite: ``executemany``;
PostgreSQL: column arrays through ``unnest``): text with quotes, backslashes, control and
non-ASCII characters, NULLs, the extreme integers of an undated series row and of an open
period. (A ``json_each`` insert of a table's rows was tried for SQLite: same rows, but
slower end to end, docs/mllp-ingest-performance.md "ninth round".)"""

from __future__ import annotations

from sqlalchemy import select

from fhir_server.search import extract_index
from fhir_server.storage import schema as t
from fhir_server.storage._plan import INDEX_COLS

TEXTS = ['plain', 'quote " and \\ backslash', "tab\tnew\nline", "Müller 血压 😀", "", "NUL-free \u001f unit sep"]


def _patients() -> list[dict]:
    return [{"resourceType": "Patient", "id": f"p{i}", "active": i % 2 == 0,
             "name": [{"family": text, "given": [text[::-1] or "x"]}],
             "identifier": [{"system": f"urn:sys:{i}", "value": text or "empty"}],
             "birthDate": "1961-07-15" if i % 2 else "0001-01-01"}
            for i, text in enumerate(TEXTS * 3)]


def _observations() -> list[dict]:
    out = []
    for i, text in enumerate(TEXTS * 2):
        res = {"resourceType": "Observation", "id": f"o{i}", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": text},
                                   {"system": "urn:x", "code": text or "c"}], "text": text},
               "subject": {"reference": f"Patient/p{i}"}}
        if i % 3 == 0:
            res["effectivePeriod"] = {"start": "2024-05-01T08:00:00Z"}  # open: ends at the largest time
        elif i % 3 == 1:
            res["effectiveDateTime"] = "2024-05-01T08:00:00.123+02:00"
        # i % 3 == 2: no time, its series row sits at UNDATED (the smallest integer)
        out.append(res)
    return out


async def _stored(store, kind: str) -> list[tuple]:
    table = t.INDEX_TABLES[kind]
    cols = [table.c[c] for c in ("rid", *INDEX_COLS[kind])]
    return sorted(tuple(r) for r in await store.fetch(select(*cols)))


async def test_stored_rows_are_the_indexers(store) -> None:
    resources = _patients() + _observations()

    async def job(tx) -> None:
        for res in resources:
            tx.put(res["resourceType"], res["id"], res)

    await store.write(job)
    rids = {(r[1], r[2]): r[0] for r in await store.fetch(select(t.resource.c.rid, t.resource.c.type, t.resource.c.id))}
    for kind in ("token", "string", "date", "reference", "quantity"):
        expected = sorted(
            (rids[(res["resourceType"], res["id"])], *(row.get(c) for c in INDEX_COLS[kind]))
            for res in resources for row in extract_index(res["resourceType"], res).get(kind, ()))
        assert await _stored(store, kind) == expected, kind
    dates = await _stored(store, "date")
    assert min(d[2] for d in dates) == -(2**63) and max(d[3] for d in dates) >= 2**62  # the extremes went through
