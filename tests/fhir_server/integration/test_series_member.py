"""``series_member``: written with the first reading of a series, once; never lost to a rollback;
a second writer of the same database writes the same rows without an error; a patient+code
search finds a coding's readings in every series that holds them (composite.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from fhir_server.search.composite import composite_key, end_param, set_key
from fhir_server.storage import Store, make_engine
from fhir_server.storage import schema as t

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
HR = [{"system": LOINC, "code": "8867-4"}, {"system": MDC, "code": "147842"}]


def _obs(i: int, coding: list[dict], patient: str = "p1") -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"coding": coding},
            "subject": {"reference": f"Patient/{patient}"},
            "effectiveDateTime": f"2024-05-01T08:{i // 60:02d}:{i % 60:02d}Z"}


async def _members(store) -> list[tuple[str, str]]:
    return sorted(tuple(r) for r in await store.fetch(select(t.series_member)))


def _hr_members(patient: str) -> list[tuple[str, str]]:
    pair = end_param(set_key(patient, sorted((c["system"], c["code"]) for c in HR)))
    return sorted((end_param(composite_key(patient, c["system"], c["code"])), pair) for c in HR)


async def test_a_series_rows_are_written_once(store) -> None:
    async def job(tx) -> None:
        for i in range(5):
            tx.put("Observation", f"o{i}", _obs(i, HR))

    await store.write(job)
    assert await _members(store) == _hr_members("p1")
    # the store now knows the set: later readings of it queue no membership rows at all
    sets = {s for _, s in _hr_members("p1")}
    assert sets <= store._series_sets  # noqa: SLF001

    async def more(tx) -> None:
        tx.put("Observation", "o9", _obs(9, HR))
        await tx.flush()
        assert not tx.members.fresh

    await store.write(more)
    assert await _members(store) == _hr_members("p1")


async def test_a_rolled_back_set_is_written_again(store) -> None:
    async def failing(tx) -> None:
        tx.put("Observation", "a", _obs(1, HR, "p2"))
        await tx.flush()
        raise RuntimeError("the job fails after its flush")

    with pytest.raises(RuntimeError):
        await store.write(failing)
    assert await _members(store) == []
    assert not store._series_sets  # noqa: SLF001 - not committed: not known

    async def job(tx) -> None:
        tx.put("Observation", "b", _obs(2, HR, "p2"))

    await store.write(job)
    assert await _members(store) == _hr_members("p2")


async def test_a_second_writer_writes_the_same_rows(store, db_url) -> None:
    async def job(tx) -> None:
        tx.put("Observation", "a", _obs(1, HR))

    await store.write(job)
    other = Store(make_engine(db_url))  # knows nothing yet: inserts the set's rows again
    await other.start()
    try:
        async def again(tx) -> None:
            tx.put("Observation", "b", _obs(2, HR))

        await other.write(again)
    finally:
        await other.close()
    assert await _members(store) == _hr_members("p1")


async def test_a_search_reads_every_series_of_a_coding(client) -> None:
    # the LOINC heart rate alone, with its MDC code, and with another one: three series
    for i, coding in enumerate([HR[:1], HR, [HR[0], {"system": MDC, "code": "149530"}]]):
        for k in range(3):
            assert (await client.post("Observation", json=_obs(3 * i + k, coding))).status_code == 201
    seen: list[str] = []
    url: str | None = f"Observation?patient=p1&code={LOINC}|8867-4&_count=4"
    while url:
        got = (await client.get(url)).json()
        seen += [e["resource"]["effectiveDateTime"] for e in got.get("entry", ())]
        url = next((link["url"] for link in got["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == [f"2024-05-01T08:00:{s:02d}Z" for s in range(9)]  # each once, across pages
    mdc = (await client.get(f"Observation?patient=p1&code={MDC}|147842")).json()
    assert len(mdc["entry"]) == 3
    last = (await client.get(f"Observation/$lastn?patient=p1&code={LOINC}|8867-4&max=2")).json()
    assert [e["resource"]["effectiveDateTime"] for e in last["entry"]] == ["2024-05-01T08:00:08Z",
                                                                          "2024-05-01T08:00:07Z"]
    dated = (await client.get(f"Observation?patient=p1&code={LOINC}|8867-4&date=ge2024-05-01T08:00:04Z")).json()
    assert sorted(e["resource"]["effectiveDateTime"] for e in dated["entry"]) == [
        f"2024-05-01T08:00:{s:02d}Z" for s in range(4, 9)]


async def test_lastn_by_category_keeps_a_series_no_row_names(client, store) -> None:
    """A series whose series_member rows are missing (written around them) is still a group."""
    vitals = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                           "code": "vital-signs"}]}]
    for i, coding in enumerate([HR, [{"system": LOINC, "code": "9279-1"}]]):
        res = {**_obs(i, coding), "category": vitals}
        assert (await client.post("Observation", json=res)).status_code == 201
    lone = end_param(composite_key("p1", LOINC, "9279-1"))

    async def forget(tx) -> None:
        await tx.execute(delete(t.series_member).where(t.series_member.c.set_param == lone))

    await store.write(forget)
    got = (await client.get("Observation/$lastn?patient=p1&category=vital-signs")).json()
    assert sorted(e["resource"]["code"]["coding"][0]["code"] for e in got["entry"]) == ["8867-4", "9279-1"]
