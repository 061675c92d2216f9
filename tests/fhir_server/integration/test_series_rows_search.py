"""Patient+code searches read the series' end-time rows (composite.py), one a reading, undated
readings included; migration 0008 replaced the key token rows with them, and puts them back."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from fhir_server.search.composite import END_PREFIX, UNDATED, composite_key
from fhir_server.storage import schema as t
from fhir_server.storage import upgrade

from .test_series_end_rows import COMPOSITE_PARAM, _migrate

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
CODINGS = [{"system": LOINC, "code": "8867-4"}, {"system": MDC, "code": "147842"},
           {"system": LOINC, "code": "8310-5"}, {"code": "local"}]
PATIENTS = ["p1", "p2"]


def _obs(rng: random.Random, i: int) -> dict:
    codings = rng.sample(CODINGS, rng.randint(1, 2))
    if rng.random() < 0.1:
        codings.append(codings[0])  # the same coding twice: still one match
    res = {"resourceType": "Observation", "status": "final", "code": {"coding": codings},
           "subject": {"reference": f"Patient/{rng.choice(PATIENTS)}"}}
    if rng.random() > 0.1:
        # times not in creation order: the series' index order is not the rid order
        res["effectiveDateTime"] = f"2024-05-01T08:{rng.randrange(60):02d}:{i % 60:02d}Z"
    return res


async def _ids(client, query: str) -> list[str]:
    """Every page of ``query``, in order."""
    out: list[str] = []
    url: str | None = f"Observation?{query}"
    while url:
        got = (await client.get(url)).json()
        out += [e["resource"]["id"] for e in got.get("entry", ()) if e["search"]["mode"] == "match"]
        url = next((link["url"] for link in got.get("link", ()) if link["relation"] == "next"), None)
    return out


@pytest.mark.parametrize("seed", [1, 2])
async def test_patient_and_code_find_every_reading_once(client, seed) -> None:
    rng = random.Random(seed)
    stored = {f"o{i}": _obs(rng, i) for i in range(120)}
    for id_, res in stored.items():
        assert (await client.put(f"Observation/{id_}", json={**res, "id": id_})).status_code == 201
    gone = rng.sample(sorted(stored), 10)
    for id_ in gone:
        assert (await client.delete(f"Observation/{id_}")).status_code in (200, 204)
    checked = 0
    for patient in PATIENTS:
        for coding in CODINGS[:3]:
            token = f"{coding['system']}|{coding['code']}"
            expected = {id_ for id_, res in stored.items() if id_ not in gone
                        and res["subject"]["reference"] == f"Patient/{patient}" and coding in res["code"]["coding"]}
            for extra in ("", "&_sort=date", "&date=lt2024-05-01T08:30:00Z", "&date=ge2024-05-01T08:30:00Z"):
                got = await _ids(client, f"patient={patient}&code={token}&_count=7{extra}")
                assert len(got) == len(set(got)), extra  # no reading twice, across pages
                want = expected
                if "date=" in extra:  # undated readings never match a date bound
                    cut = "2024-05-01T08:30:00Z"
                    want = {i for i in expected if "effectiveDateTime" in stored[i]
                            and (stored[i]["effectiveDateTime"] < cut) == ("lt" in extra)}
                assert set(got) == want, (patient, token, extra)
                checked += len(want)
    assert checked > 100
    undated = [i for i, r in stored.items() if "effectiveDateTime" not in r and i not in gone]
    assert undated  # the data has undated readings, so the searches above looked for them


def _expected_keys(stored: dict[str, dict]) -> list[str]:
    """The token rows' keys the indexer wrote before 0008: one a coding with a code."""
    return sorted(composite_key(r["subject"]["reference"].split("/")[1], c.get("system"), c["code"])
                  for r in stored.values() for c in r["code"]["coding"])


async def _hidden(store) -> tuple[list, list]:
    tok, d = t.INDEX_TABLES["token"].c, t.INDEX_TABLES["date"].c
    keys = await store.fetch(select(tok.code).where(tok.param == COMPOSITE_PARAM))
    ends = await store.fetch(select(d.rid, d.param, d.lo, d.hi).where(d.param.like(END_PREFIX + "%"))
                             .order_by(d.rid, d.param))
    return sorted(k for (k,) in keys), [tuple(r) for r in ends]


async def test_0008_drops_the_key_rows_and_puts_them_back(store) -> None:
    rng = random.Random(3)
    stored = {f"o{i}": _obs(rng, i) for i in range(60)}

    async def job(tx) -> None:
        for id_, res in stored.items():
            tx.put("Observation", id_, res)

    await store.write(job)
    head = await _hidden(store)
    members = sorted(tuple(r) for r in await store.fetch(select(t.series_member)))
    await _migrate(store, "0008")  # one end-time row a coding, as 0008 left them (0009 in its docstring)
    keys, ends = await _hidden(store)
    assert keys == []
    undated = [e for e in ends if e[2] == UNDATED]
    assert undated and all(e[3] == UNDATED for e in undated)
    await _migrate(store, "0007")
    old_keys, old_ends = await _hidden(store)
    assert old_keys == _expected_keys(stored)
    assert old_ends == [e for e in ends if e[2] != UNDATED]  # before 0008 an undated reading had none
    await upgrade(store.engine)
    assert await _hidden(store) == head  # 0009 rebuilds the rows of the whole code's series
    assert sorted(tuple(r) for r in await store.fetch(select(t.series_member))) == members
    assert any(k != s for k, s in members) and any(k == s for k, s in members)
