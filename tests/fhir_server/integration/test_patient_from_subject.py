"""``patient`` is answered from the ``subject`` rows (shared_rows.py): the same results as
when it had rows of its own, on SQLite and PostgreSQL; migration 0006 drops and restores them."""

from __future__ import annotations

from sqlalchemy import select

from alembic import command
from fhir_server.storage import schema as t
from fhir_server.storage import upgrade
from fhir_server.storage.migrate import alembic_config
from fhir_server.subscriptions.criteria import IndexedResource, compile_criteria

LOINC = "http://loinc.org"
PATIENT_URL = "https://ehr.example.org/fhir/Patient/p9"


def obs(id_: str, subject: str | None) -> dict:
    res = {"resourceType": "Observation", "id": id_, "status": "final",
           "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
           "effectiveDateTime": "2024-05-01T08:00:00Z"}
    if subject:
        res["subject"] = {"reference": subject}
    return res


SUBJECTS = {"a": "Patient/p1", "b": "Device/p1", "c": "Group/g1", "d": None,
            "e": PATIENT_URL, "f": "urn:uuid:0f5b2c1e-1111-4222-8333-944455556666", "g": "Patient/p2"}


async def seed(client) -> None:
    for rid, ref in [("p1", "Patient"), ("p2", "Patient"), ("p1", "Device")]:
        r = await client.put(f"{ref}/{rid}", json={"resourceType": ref, "id": rid})
        assert r.status_code in (200, 201), r.text
    for id_, subject in SUBJECTS.items():
        r = await client.put(f"Observation/{id_}", json=obs(id_, subject))
        assert r.status_code in (200, 201), r.text


async def found(client, query: str) -> list[tuple[str, str, str]]:
    r = await client.get(query)
    assert r.status_code == 200, r.text
    return sorted((e["search"]["mode"], e["resource"]["resourceType"], e["resource"]["id"])
                  for e in r.json().get("entry", []))


def matches(query: str) -> list[str]:
    return [("match", "Observation", i) for i in query]


async def test_patient_search_semantics(client) -> None:
    await seed(client)
    assert await found(client, "Observation?patient=p1") == matches("a")  # not Device/p1
    assert await found(client, "Observation?patient=Patient/p1") == matches("a")
    assert await found(client, "Observation?subject=p1") == matches("ab")
    assert await found(client, f"Observation?patient={PATIENT_URL}") == matches("e")
    # a URL of no known type counts as a patient (the extractor's rule for typed references)
    assert await found(client, "Observation?patient:missing=true") == matches("bcd")
    assert await found(client, "Observation?patient:missing=false") == matches("aefg")
    assert await found(client, "Observation?patient=p1,p2&code=8867-4") == matches("ag")
    assert await found(client, f"Observation?patient=p1&code={LOINC}|8867-4") == matches("a")
    assert await found(client, "Observation?patient:Patient=p2") == matches("g")
    assert await found(client, "Observation?_id=a,b&_include=Observation:patient") == [
        ("include", "Patient", "p1"), *matches("ab")]
    assert await found(client, "Patient?_id=p1&_revinclude=Observation:patient") == [
        ("include", "Observation", "a"), ("match", "Patient", "p1")]
    r = await client.get("Observation?patient:missing=false&_sort=patient")
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["a", "g", "e", "f"]  # by target id, none last


def test_subscription_criteria_read_the_subject_rows() -> None:
    crit = compile_criteria("Observation?patient=p1")
    assert crit.matches(IndexedResource.of("Observation", obs("a", "Patient/p1")))
    assert not crit.matches(IndexedResource.of("Observation", obs("b", "Device/p1")))
    assert compile_criteria("Observation?patient:missing=true").matches(
        IndexedResource.of("Observation", obs("c", "Group/g1")))


async def _reference_rows(store, param: str) -> list[tuple]:
    r = t.INDEX_TABLES["reference"].c
    rows = await store.fetch(select(r.rid, r.target_type, r.target_id, r.url).where(r.param == param)
                             .order_by(r.rid))
    return [tuple(x) for x in rows]


async def test_0006_drops_and_restores_the_rows(store) -> None:
    async def job(tx) -> None:
        for id_, subject in SUBJECTS.items():
            tx.put("Observation", id_, obs(id_, subject))

    await store.write(job)
    assert await _reference_rows(store, "Observation.patient") == []
    subject = await _reference_rows(store, "Observation.subject")

    def down(conn) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")

    async with store.engine.begin() as conn:
        await conn.run_sync(down)
    # what the extractor wrote before: a Patient target or a URL of no known type
    assert await _reference_rows(store, "Observation.patient") == [
        s for s in subject if s[1] == "Patient" or (s[1] is None and s[3] is not None)]
    await upgrade(store.engine)
    assert await _reference_rows(store, "Observation.patient") == []
