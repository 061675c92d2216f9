"""``$lastn`` by category walks the patient's series (one index range each) and returns what
the patient-wide plan returns: codings with and without a system, keys too long for their
end-time row as written, deleted and undated Observations, Observations of one to three
codings (a series of the whole code, regrouped by coding through series_member), several
categories; migration 0007 writes the series rows of what was stored before, and removes them
again."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from sqlalchemy import select

from fhir_server.core import fastread
from fhir_server.core.search_exec import _every_series, _lastn_of_code, series_members, with_series
from fhir_server.search.composite import END_PREFIX, composite_key, end_param, patient_series_bounds, series_of, set_key
from fhir_server.search.query import parse_search
from fhir_server.search.sql import build_lastn, build_select
from fhir_server.search.values import parse_token
from fhir_server.storage import schema as t
from fhir_server.storage import upgrade

from .test_series_end_rows import COMPOSITE_PARAM, _migrate

LOINC = "http://loinc.org"
VITALS = "http://terminology.hl7.org/CodeSystem/observation-category"
LONG_SYSTEM = "urn:vendor:" + "y" * 90  # its keys are longer than an end-time row's param
PATIENTS = ["p1", "p2", "0f8fad5b-d9cb-469f-a165-70867728950e"]
CODINGS = [{"system": LOINC, "code": "8867-4"}, {"system": LOINC, "code": "59408-5"},
           {"code": "hr-local"}, {"system": "", "code": "blank-system"},
           {"system": LONG_SYSTEM, "code": "v1"}, {"system": LONG_SYSTEM, "code": "v2"},
           {"system": "urn:iso:std:iso:11073:10101", "code": "150456"}]


def _obs(rng: random.Random, i: int) -> dict:
    res = {"resourceType": "Observation", "status": "final",
           "category": [{"coding": [{"system": VITALS, "code": rng.choice(["vital-signs", "exam"])}]}],
           "code": {"coding": rng.sample(CODINGS, rng.randint(1, 3))},
           "subject": {"reference": f"Patient/{rng.choice(PATIENTS)}"}}
    if rng.random() > 0.05:  # a few have no time: $lastn does not rank them
        # distinct instants: the two plans rank ties alike only by rid
        res["effectiveDateTime"] = f"2024-05-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
    return res


async def _lastn_both_ways(store, patient: str, category: str, n: int) -> tuple[list, list]:
    cat = [parse_token(c) for c in category.split(",")]
    walked = await _every_series(store, ("Patient", patient), cat, [], n)
    assert walked is not None
    wide = await store.fetch(build_lastn(("Patient", patient), cat, [], n))
    return [r[2] for r in walked], [r[2] for r in wide]


@pytest.mark.parametrize("seed", [1, 2])
async def test_walking_the_series_matches_the_patient_wide_plan(store, seed) -> None:
    rng = random.Random(seed)
    ids = [f"o{i}" for i in range(240)]
    rng.shuffle(ids)  # rids are not in time order

    async def job(tx) -> None:
        for i, id_ in enumerate(ids):
            tx.put("Observation", id_, _obs(rng, i))

    await store.write(job)
    gone = rng.sample(ids, 30)

    async def delete(tx) -> None:
        for id_ in gone:
            tx.delete("Observation", id_)

    await store.write(delete)
    for patient in PATIENTS + ["nobody"]:
        for category, n in [(f"{VITALS}|vital-signs", 1), ("exam", 3), ("vital-signs,exam", 2), (f"{VITALS}|", 1)]:
            walked, wide = await _lastn_both_ways(store, patient, category, n)
            assert walked == wide, (patient, category, n)
            assert not set(walked) & set(gone)
    walked, _ = await _lastn_both_ways(store, "p1", "vital-signs", 1)
    assert walked  # the data gives p1 readings, so the comparison is not of two empty lists


@pytest.mark.parametrize("seed", [3])
async def test_a_code_in_several_series_reads_their_union(store, seed) -> None:
    """A coding whose readings sit in several series (alone, and with one or two others):
    ``$lastn`` by code (fixed SQL and the generic plan given the series) and a patient+code
    search return what the plans without series return."""
    rng = random.Random(seed)

    async def job(tx) -> None:
        for i in range(200):
            tx.put("Observation", f"o{i}", _obs(rng, i))

    await store.write(job)
    for patient in PATIENTS:
        for c in CODINGS:
            if not c.get("system"):
                continue
            code = parse_token(f"{c['system']}|{c['code']}")
            key = composite_key(patient, c["system"], c["code"])
            members = await series_members(store, [end_param(key)])
            series = series_of([key], members)
            for n in (1, 4):
                wide = [r[2] for r in await store.fetch(build_lastn(("Patient", patient), [], [code], n))]
                fixed = [r[2] for r in await _lastn_of_code(store, key, n)]
                given = [r[2] for r in await store.fetch(build_lastn(("Patient", patient), [], [code], n,
                                                                     {end_param(key): series}))]
                assert fixed == wide == given, (patient, c, n)
            q = parse_search("Observation", [("patient", patient), ("code", f"{c['system']}|{c['code']}"),
                                             ("_count", "500")], strict=True)
            plain = sorted(r[2] for r in await store.fetch(build_select(q)))
            got = sorted(r[2] for r in await store.fetch(build_select(await with_series(store, q))))
            assert got == plain, (patient, c)
    several = [k for k, n in Counter(m[0] for m in (await fastread.fetch_many(
        store, [("SELECT pkey, set_param FROM series_member", ())]))[0]).items() if n > 1]
    assert several  # the data puts some coding in more than one series


async def _walk(store, patient: str) -> list[str]:
    lo, hi = patient_series_bounds(patient)
    return [r[0] for r in (await fastread.fetch_many(store, [(fastread.SERIES_OF_PATIENT_SQL, (lo, hi, hi))]))[0]]


async def test_every_series_is_one_param_per_code_of_the_patient(store) -> None:
    async def job(tx) -> None:
        for i, coding in enumerate(CODINGS):
            tx.put("Observation", f"x{i}", {"resourceType": "Observation", "status": "final",
                                            "code": {"coding": [coding]}, "subject": {"reference": "Patient/p1"},
                                            "effectiveDateTime": f"2024-05-01T08:00:0{i}Z"})
        tx.put("Observation", "other", {"resourceType": "Observation", "status": "final",
                                        "code": {"coding": [CODINGS[0]]}, "subject": {"reference": "Patient/p2"},
                                        "effectiveDateTime": "2024-05-01T08:00:00Z"})

        # two codings: one series of their own, which series_member names for each coding
        tx.put("Observation", "pair", {"resourceType": "Observation", "status": "final",
                                       "code": {"coding": CODINGS[:2]}, "subject": {"reference": "Patient/p1"},
                                       "effectiveDateTime": "2024-05-01T08:00:00Z"})

    await store.write(job)
    series = await _walk(store, "p1")
    pair = end_param(set_key("p1", sorted((c["system"], c["code"]) for c in CODINGS[:2])))
    assert set(series) == {end_param(composite_key("p1", c.get("system"), c["code"])) for c in CODINGS} | {pair}
    assert all(len(p) <= 96 for p in series)
    members = (await fastread.fetch_many(store, [(fastread.MEMBERS_OF_PATIENT_SQL, patient_series_bounds("p1"))]))[0]
    own = [end_param(composite_key("p1", c.get("system"), c["code"])) for c in CODINGS]
    assert sorted(tuple(m) for m in members) == sorted([(k, k) for k in own] + [(k, pair) for k in own[:2]])
    assert await _every_series(store, ("Group", "p1"), [], [], 1) is None  # not a patient: the wide plan
    assert await fastread.bytewise_text(store)  # the test databases sort text by code point


async def test_the_rest_api_answers_a_category_from_the_series(client, store) -> None:
    for i, coding in enumerate(CODINGS[:4]):
        res = {"resourceType": "Observation", "status": "final", "code": {"coding": [coding]},
               "category": [{"coding": [{"system": VITALS, "code": "vital-signs"}]}],
               "subject": {"reference": "Patient/p1"}, "effectiveDateTime": f"2024-05-01T08:00:0{i}Z"}
        assert (await client.post("Observation", json=res)).status_code == 201
        assert (await client.post("Observation", json={**res, "effectiveDateTime": "2024-04-01T08:00:00Z"})
                ).status_code == 201
    got = (await client.get("Observation/$lastn?patient=Patient/p1&category=vital-signs")).json()
    times = sorted(e["resource"]["effectiveDateTime"] for e in got["entry"])
    assert times == [f"2024-05-01T08:00:0{i}Z" for i in range(4)]  # the newest of each code, none older


async def _hidden_rows(store) -> tuple[list, list]:
    tok, d = t.INDEX_TABLES["token"].c, t.INDEX_TABLES["date"].c
    keys = await store.fetch(select(tok.rid, tok.code).where(tok.param == COMPOSITE_PARAM).order_by(tok.rid, tok.code))
    ends = await store.fetch(select(d.rid, d.param, d.lo, d.hi).where(d.param.like(END_PREFIX + "%"))
                             .order_by(d.rid, d.param))
    return [tuple(r) for r in keys], [tuple(r) for r in ends]


async def test_0007_writes_the_new_series_rows_and_removes_them(store) -> None:
    async def job(tx) -> None:
        for i, coding in enumerate(CODINGS):
            tx.put("Observation", f"x{i}", {"resourceType": "Observation", "status": "final",
                                            "code": {"coding": [coding, CODINGS[0]]},
                                            "subject": {"reference": "Patient/p1"},
                                            "effectiveDateTime": f"2024-05-01T08:00:0{i}Z"})

    await store.write(job)
    head = await _hidden_rows(store)
    await _migrate(store, "0007")  # the key token rows exist up to 0007
    keys, ends = await _hidden_rows(store)
    await _migrate(store, "0006")
    old_keys, old_ends = await _hidden_rows(store)
    # before 0007: system-bearing keys only, and end rows only for keys that fit
    assert len(old_keys) == len(keys) - 2 and len(old_ends) == len(ends) - 4
    assert {p for _, p, *_ in old_ends} == {END_PREFIX + k for _, k in old_keys if len(END_PREFIX + k) <= 96}
    await _migrate(store, "0007", up=True)
    assert await _hidden_rows(store) == (keys, ends)
    assert {p for _, p, *_ in ends} >= {end_param(k) for _, k in keys}
    await upgrade(store.engine)
    assert await _hidden_rows(store) == head
