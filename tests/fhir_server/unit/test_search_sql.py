"""Search SQL on a real database: SQLite (always) and PostgreSQL (when reachable).

A test-only loader writes resources with Core (resource + resource_version + the rows of
``extract_index``); each test checks the exact ids a search returns. Expected ids are worked
out by hand from the fixture data below and the R4B search rules.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
import pytest_asyncio
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from fhir_server.search import (
    TokenValue,
    build_count,
    build_includes,
    build_lastn,
    build_select,
    build_snapshot,
    extract_index,
    parse_search,
)
from fhir_server.search.composite import composite_key, composite_keys, end_param, series_of
from fhir_server.search.query import SearchQuery
from fhir_server.storage.schema import INDEX_TABLES, MEMBER_KIND, metadata, resource, resource_version, series_member

pytestmark = pytest.mark.asyncio(loop_scope="module")

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
T0 = 1_714_550_400_000_000  # 2024-05-01T08:00:00Z
PG = ("127.0.0.1", 5432)


# ---- test-only loader --------------------------------------------------------------------

class Loader:
    """Writes resources the way the store does: version row, resource row, index rows."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.rid = 0
        self.vid = 0
        self.rids: dict[str, int] = {}
        self.members: dict[str, set[str]] = {}

    async def put(self, body: dict[str, Any]) -> int:
        rt, rid_ = body["resourceType"], body["id"]
        self.vid += 1
        key = f"{rt}/{rid_}"
        new = key not in self.rids
        if new:
            self.rid += 1
            self.rids[key] = self.rid
        rid = self.rids[key]
        ts = T0 + self.vid * 1_000_000
        await self.conn.execute(insert(resource_version).values(
            vid=self.vid, rid=rid, version=self.vid, last_updated=ts, deleted=False,
            method="PUT", body=orjson.dumps(body)))
        row = {"type": rt, "id": rid_, "version": self.vid, "last_updated": ts,
               "deleted": False, "vid": self.vid}
        if new:
            await self.conn.execute(insert(resource).values(rid=rid, **row))
        else:
            await self.conn.execute(update(resource).where(resource.c.rid == rid).values(**row))
        for table in INDEX_TABLES.values():
            await self.conn.execute(delete(table).where(table.c.rid == rid))
        for kind, rows in extract_index(rt, body).items():
            if kind == MEMBER_KIND:  # facts about the code (no rid): written once
                for r in rows:
                    if r["set_param"] not in self.members.get(r["pkey"], ()):
                        self.members.setdefault(r["pkey"], set()).add(r["set_param"])
                        await self.conn.execute(insert(series_member).values(pkey=r["pkey"], set_param=r["set_param"]))
            elif rows:
                await self.conn.execute(insert(INDEX_TABLES[kind]),
                                        [{"rid": rid, **r} for r in rows])
        return rid

    async def delete(self, rt: str, id_: str) -> None:
        rid = self.rids[f"{rt}/{id_}"]
        await self.conn.execute(update(resource).where(resource.c.rid == rid).values(deleted=True))


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def obs(id_: str, subject: str, codes: list[dict[str, Any]], when: Any, **extra: Any) -> dict:
    body: dict[str, Any] = {
        "resourceType": "Observation", "id": id_, "status": extra.pop("status", "final"),
        "category": [{"coding": [coding(CAT, extra.pop("category", "vital-signs"))]}],
        "code": {"coding": codes}, "subject": {"reference": subject},
    }
    if isinstance(when, dict):
        body["effectivePeriod"] = when
    else:
        body["effectiveDateTime"] = when
    body.update(extra)
    return body


def qty(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


HR = [coding(LOINC, "8867-4", "Heart rate"), coding(MDC, "147842", "MDC_ECG_HEART_RATE")]
TEMP = [coding(LOINC, "8310-5", "Body temperature")]

RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1", "active": True, "gender": "female",
     "birthDate": "1961-07-15", "identifier": [{"system": "urn:mrn", "value": "111"}],
     "name": [{"family": "Müller", "given": ["Anna"]}],
     "telecom": [{"system": "phone", "value": "555-0101"}]},
    {"resourceType": "Patient", "id": "p2", "active": False, "gender": "male",
     "birthDate": "1980", "identifier": [{"system": "urn:mrn", "value": "222"}],
     "name": [{"family": "Smith", "given": ["John"]}]},
    {"resourceType": "Patient", "id": "p3", "name": [{"family": "Lee_Wong"}]},
    {"resourceType": "Patient", "id": "p4", "name": [{"family": "Leex"}]},
    {"resourceType": "Location", "id": "icu", "name": "ICU North", "status": "active"},
    {"resourceType": "Location", "id": "bed1", "name": "Bed 1",
     "partOf": {"reference": "Location/icu"}},
    {"resourceType": "Device", "id": "d1", "manufacturer": "Philips", "modelNumber": "MX800",
     "patient": {"reference": "Patient/p1"},
     "identifier": [{"system": "urn:ieee:eui64", "value": "0012345678ABCDEF"}]},
    {"resourceType": "Encounter", "id": "e1", "status": "in-progress",
     "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "ACUTE"),
     "subject": {"reference": "Patient/p1"}, "period": {"start": "2024-05-01T00:00:00Z"},
     "location": [{"location": {"reference": "Location/bed1"}}]},
    obs("o1", "Patient/p1", HR, "2024-05-01T08:00:00Z", valueQuantity=qty(72, "/min"),
        device={"reference": "Device/d1"}, encounter={"reference": "Encounter/e1"}),
    obs("o2", "Patient/p1", HR, "2024-05-01T09:00:00Z", valueQuantity=qty(80, "/min"),
        meta={"profile": ["http://hl7.org/fhir/StructureDefinition/heartrate"]}),
    obs("o3", "Patient/p1", TEMP, "2024-05-01T09:30:00Z", valueQuantity=qty(98.6, "[degF]")),
    obs("o4", "Patient/p1", TEMP, "2024-05-01T10:00:00Z", valueQuantity=qty(37.5, "Cel"),
        status="preliminary"),
    obs("o5", "Patient/p2", HR, "2024-05-02T08:00:00Z", valueQuantity=qty(110, "/min")),
    obs("o6", "Patient/p2", [coding(LOINC, "85354-9", "Blood pressure panel")],
        {"start": "2024-05-01T00:00:00Z", "end": "2024-05-03T00:00:00Z"}, status="amended",
        component=[
            {"code": {"coding": [coding(LOINC, "8480-6")]}, "valueQuantity": qty(120, "mm[Hg]")},
            {"code": {"coding": [coding(LOINC, "8462-4")]}, "valueQuantity": qty(10.7, "kPa")},
        ]),
    obs("o7", "Group/g1", [coding(LOINC, "2708-6")], "2024-05", category="laboratory",
        valueQuantity=qty(97, "%"), meta={"tag": [coding("urn:vitalgate:tag", "simulated")]})
    | {"code": {"coding": [coding(LOINC, "2708-6")], "text": "SpO2 pulse ox"}},
    obs("gone", "Patient/p1", HR, "2024-05-01T08:30:00Z"),
    {"resourceType": "DetectedIssue", "id": "di1", "status": "preliminary",
     "patient": {"reference": "Patient/p1"}, "implicated": [{"reference": "Device/d1"}],
     "author": {"reference": "https://models.example.org/fhir/Device/news2"},
     "identifiedPeriod": {"start": "2024-05-01T09:00:00Z"}},
    {"resourceType": "RiskAssessment", "id": "ra1", "status": "final",
     "subject": {"reference": "Patient/p1"}, "prediction": [{"probabilityDecimal": 0.25}]},
    {"resourceType": "RiskAssessment", "id": "ra2", "status": "final",
     "subject": {"reference": "Patient/p2"}, "prediction": [{"probabilityDecimal": 0.8}]},
]


# ---- databases ---------------------------------------------------------------------------

def _pg_open() -> bool:
    try:
        with socket.create_connection(PG, timeout=0.5):
            return True
    except OSError:
        return False


async def _engine(kind: str, tmp: str) -> tuple[AsyncEngine, str | None]:
    if kind == "sqlite":
        return create_async_engine(f"sqlite+aiosqlite:///{tmp}/search.db"), None
    if not _pg_open():
        if os.environ.get("VITALGATE_REQUIRE_SERVICES") == "1":
            pytest.fail("PostgreSQL not reachable at 127.0.0.1:5432 and VITALGATE_REQUIRE_SERVICES=1")
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432 (SQLite variant still runs)")
    schema = f"search_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    async with admin.begin() as c:
        await c.execute(text(f'CREATE SCHEMA "{schema}"'))
    await admin.dispose()
    eng = create_async_engine(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
        connect_args={"server_settings": {"search_path": schema}},
    )
    return eng, schema


async def _drop(eng: AsyncEngine, schema: str | None) -> None:
    if schema is not None:
        async with eng.begin() as c:
            await c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await eng.dispose()


@pytest_asyncio.fixture(loop_scope="module", scope="module", params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> AsyncIterator[AsyncConnection]:
    eng, schema = await _engine(request.param, str(tmp_path_factory.mktemp("search")))
    async with eng.begin() as conn:
        await conn.run_sync(metadata.create_all)
        loader = Loader(conn)
        for body in RESOURCES:
            await loader.put(body)
        await loader.delete("Observation", "gone")
    async with eng.connect() as conn:
        yield conn
    await _drop(eng, schema)


async def with_series(conn: AsyncConnection, q: SearchQuery) -> SearchQuery:
    """``search_exec.with_series`` on a plain connection: the patient+code series read."""
    combo = composite_keys(list(q.clauses))
    if combo is None:
        return q
    m = series_member.c
    rows = (await conn.execute(select(m.pkey, m.set_param).where(m.pkey.in_([end_param(k) for k in combo[0]])))).all()
    return replace(q, series=tuple(series_of(combo[0], [tuple(r) for r in rows])))


async def ids(conn: AsyncConnection, rt: str, params: list[tuple[str, str]]) -> list[str]:
    q = await with_series(conn, parse_search(rt, params, strict=True))
    return [r.id for r in (await conn.execute(build_select(q))).all()]


async def idset(conn: AsyncConnection, rt: str, query: str) -> set[str]:
    params = [tuple(p.split("=", 1)) for p in query.split("&")] if query else []
    return set(await ids(conn, rt, params))  # type: ignore[arg-type]


# ---- parameter types, prefixes, modifiers ------------------------------------------------

@pytest.mark.parametrize(("query", "expected"), [
    ("code=http://loinc.org|8867-4", {"o1", "o2", "o5"}),
    ("code=8867-4", {"o1", "o2", "o5"}),
    ("code=urn:iso:std:iso:11073:10101|147842", {"o1", "o2", "o5"}),
    ("code=|8867-4", set()),
    ("code=http://loinc.org|", {"o1", "o2", "o3", "o4", "o5", "o6", "o7"}),
    ("code=8867-4,8310-5", {"o1", "o2", "o3", "o4", "o5"}),
    ("status:not=final", {"o4", "o6"}),
    ("code:text=pulse", {"o7"}),
    ("code:text=heart", {"o1", "o2", "o5"}),
    ("category=laboratory", {"o7"}),
    ("component-code=8480-6", {"o6"}),
    ("_id=o1,o3", {"o1", "o3"}),
    ("_id=gone", set()),
    ("_id=o1,o4,o7&status=final&code=8867-4,2708-6", {"o1", "o7"}),
    ("_profile=http://hl7.org/fhir/StructureDefinition/heartrate", {"o2"}),
    ("_tag=urn:vitalgate:tag|simulated", {"o7"}),
    ("_tag:missing=false", {"o7"}),
])
async def test_token(db: AsyncConnection, query: str, expected: set[str]) -> None:
    assert await idset(db, "Observation", query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("gender=female", {"p1"}),
    ("active=true", {"p1"}),
    ("active=false", {"p2"}),
    ("identifier=urn:mrn|222", {"p2"}),
    ("telecom=555-0101", {"p1"}),
    ("name=mül", {"p1"}),
    ("name=MULLER", {"p1"}),
    ("family:exact=Müller", {"p1"}),
    ("family:exact=muller", set()),
    ("name:contains=ohn", {"p2"}),
    ("given=ann", {"p1"}),
    ("name=lee_", {"p3"}),
    ("name=lee", {"p3", "p4"}),
    ("name:contains=%", set()),
    ("birthdate=1961", {"p1"}),
    ("birthdate=lt1970", {"p1"}),
    ("birthdate=1980-06", set()),
    ("gender:missing=true", {"p3", "p4"}),
])
async def test_patient_string_token_date(db: AsyncConnection, query: str, expected: set[str]) -> None:
    assert await idset(db, "Patient", query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("date=2024-05-01", {"o1", "o2", "o3", "o4"}),
    ("date=2024-05", {"o1", "o2", "o3", "o4", "o5", "o6", "o7"}),
    ("date=ne2024-05-01", {"o5", "o6", "o7"}),
    ("date=gt2024-05-01", {"o5", "o6", "o7"}),
    ("date=lt2024-05-01T09:00:00Z", {"o1", "o6", "o7"}),
    ("date=ge2024-05-01T09:00:00Z", {"o2", "o3", "o4", "o5", "o6", "o7"}),
    ("date=le2024-05-01T09:00:00Z", {"o1", "o2", "o6", "o7"}),
    ("date=sa2024-05-01", {"o5"}),
    ("date=eb2024-05-02", {"o1", "o2", "o3", "o4"}),
    ("date=2024-05-01T11:00+02:00", {"o2"}),
    ("date=ge2024-05-01&date=lt2024-05-01T09:15:00Z", {"o1", "o2", "o6", "o7"}),
])
async def test_date(db: AsyncConnection, query: str, expected: set[str]) -> None:
    assert await idset(db, "Observation", query) == expected


async def test_last_updated(db: AsyncConnection) -> None:
    # The loader stamps version n at T0 + n seconds; o1 is the 9th write.
    assert await idset(db, "Observation", "_lastUpdated=gt2024-05-01T08:00:12Z") == {
        "o5", "o6", "o7"}
    assert await idset(db, "Observation", "_lastUpdated=2024-05-01T08:00:09Z") == {"o1"}


@pytest.mark.parametrize(("query", "expected"), [
    ("value-quantity=72", {"o1"}),
    ("value-quantity=37||Cel", {"o3"}),  # 98.6 [degF] is 37.0 Cel; 37.5 is outside [36.5, 37.5)
    ("value-quantity=ge37.5|http://unitsofmeasure.org|Cel", {"o4"}),
    ("value-quantity=lt100|http://unitsofmeasure.org|[degF]", {"o3", "o4"}),
    ("value-quantity=gt100", {"o5"}),
    ("value-quantity=ap100", {"o3", "o5", "o7"}),  # any unit: 98.6, 110, 97 in [90, 110]
    ("value-quantity=ne72", {"o2", "o3", "o4", "o5", "o7"}),
    ("value-quantity=le80|http://unitsofmeasure.org|/min", {"o1", "o2"}),
    ("value-quantity=97|http://unitsofmeasure.org|%", {"o7"}),
    ("component-value-quantity=80|http://unitsofmeasure.org|mm[Hg]", {"o6"}),  # 10.7 kPa
    ("component-value-quantity=16|http://unitsofmeasure.org|kPa", {"o6"}),  # 120 mm[Hg]
    ("component-value-quantity=16|urn:other|kPa", set()),
])
async def test_quantity(db: AsyncConnection, query: str, expected: set[str]) -> None:
    assert await idset(db, "Observation", query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("probability=gt0.5", {"ra2"}),
    ("probability=0.25", {"ra1"}),
    ("probability=le0.25", {"ra1"}),
    ("probability=sa0.25", {"ra2"}),
    ("probability=eb0.8", {"ra1"}),
    ("probability=ne0.25", {"ra2"}),
    ("probability=0.8,0.25", {"ra1", "ra2"}),
])
async def test_number(db: AsyncConnection, query: str, expected: set[str]) -> None:
    assert await idset(db, "RiskAssessment", query) == expected


@pytest.mark.parametrize(("rt", "query", "expected"), [
    ("Observation", "patient=p1", {"o1", "o2", "o3", "o4"}),
    ("Observation", "patient=Patient/p2", {"o5", "o6"}),
    ("Observation", "subject=Group/g1", {"o7"}),
    ("Observation", "patient=g1", set()),
    ("Observation", "subject:Group=g1", {"o7"}),
    ("Observation", "device=Device/d1", {"o1"}),
    ("Observation", "encounter:missing=false", {"o1"}),
    ("Observation", "encounter:missing=true", {"o2", "o3", "o4", "o5", "o6", "o7"}),
    ("DetectedIssue", "implicated=Device/d1", {"di1"}),
    ("DetectedIssue", "author=https://models.example.org/fhir/Device/news2", {"di1"}),
    ("DetectedIssue", "status=preliminary&patient=p1", {"di1"}),
    ("Location", "partof=icu", {"bed1"}),
    ("Device", "patient=p1&manufacturer=phil&model=MX", {"d1"}),
    ("Encounter", "date=2024-06-01", set()),
    ("Encounter", "date=ge2024-06-01", {"e1"}),  # open-ended period
    ("Encounter", "class=ACUTE&status=in-progress", {"e1"}),
])
async def test_reference_and_others(db: AsyncConnection, rt: str, query: str,
                                    expected: set[str]) -> None:
    assert await idset(db, rt, query) == expected


@pytest.mark.parametrize(("rt", "query", "expected"), [
    ("Observation", "subject:Patient.identifier=urn:mrn|111", {"o1", "o2", "o3", "o4"}),
    ("Observation", "patient.gender=male", {"o5", "o6"}),
    ("Observation", "patient.name=smith&code=8867-4", {"o5"}),
    ("Encounter", "location.name=bed", {"e1"}),
    ("Observation", "device.manufacturer=philips", {"o1"}),
])
async def test_chain(db: AsyncConnection, rt: str, query: str, expected: set[str]) -> None:
    assert await idset(db, rt, query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    # patient + code with systems: the composite key drives (composite.py)
    ("patient=p1&code=http://loinc.org|8310-5", {"o3", "o4"}),
    ("patient=p1,p2&code=http://loinc.org|8867-4", {"o1", "o2", "o5"}),
    ("subject=Patient/p2&code=http://loinc.org|8867-4,http://loinc.org|85354-9", {"o5", "o6"}),
    ("subject=Group/g1&code=http://loinc.org|2708-6", {"o7"}),
    ("patient=p1&code=http://loinc.org|8867-4&date=ge2024-05-01T09:00:00Z", {"o2"}),
    ("patient=p1&code=http://loinc.org|8867-4,http://loinc.org|8310-5&status=final",
     {"o1", "o2", "o3"}),
    # without a system: separate clauses
    ("patient=p1&code=8310-5", {"o3", "o4"}),
    ("patient=Patient/p1&code=8867-4&value-quantity=gt75", {"o2"}),
])
async def test_and_combinations(db: AsyncConnection, query: str, expected: set[str]) -> None:
    assert await idset(db, "Observation", query) == expected


# ---- sort, include, count, lastn -----------------------------------------------------------

@pytest.mark.parametrize(("rt", "params", "expected"), [
    ("Observation", [("_sort", "date")], ["o6", "o7", "o1", "o2", "o3", "o4", "o5"]),
    ("Observation", [("_sort", "-date")], ["o7", "o6", "o5", "o4", "o3", "o2", "o1"]),
    ("Observation", [("_sort", "status,-date")], ["o6", "o7", "o5", "o3", "o2", "o1", "o4"]),
    ("Observation", [("_sort", "-_id")], ["o7", "o6", "o5", "o4", "o3", "o2", "o1"]),
    ("Observation", [("_sort", "encounter")], ["o1", "o2", "o3", "o4", "o5", "o6", "o7"]),
    ("Observation", [("_sort", "-value-quantity"), ("patient", "p1")], ["o3", "o2", "o1", "o4"]),
    ("Patient", [("_sort", "family")], ["p3", "p4", "p1", "p2"]),
    ("Patient", [("_sort", "-birthdate,_id")], ["p2", "p1", "p3", "p4"]),
])
async def test_sort(db: AsyncConnection, rt: str, params: list[tuple[str, str]],
                    expected: list[str]) -> None:
    assert await ids(db, rt, params) == expected


async def _included(db: AsyncConnection, rt: str, params: list[tuple[str, str]]) -> set[str]:
    q = parse_search(rt, params, strict=True)
    rids = [r.rid for r in (await db.execute(build_select(q))).all()]
    out: set[str] = set()
    for stmt in build_includes(q, rids):
        out |= {f"{r.type}/{r.id}" for r in (await db.execute(stmt)).all()}
    return out


async def test_include_and_revinclude(db: AsyncConnection) -> None:
    assert await _included(db, "Observation", [("_id", "o1"), ("_include", "Observation:subject"),
                                               ("_include", "Observation:device")]) == {
        "Patient/p1", "Device/d1"}
    assert await _included(db, "Observation", [("_id", "o1"), ("_include", "Observation:*")]) == {
        "Patient/p1", "Device/d1", "Encounter/e1"}
    assert await _included(db, "Observation", [
        ("_id", "o7"), ("_include", "Observation:subject:Patient")]) == set()
    assert await _included(db, "Patient", [("_id", "p1"),
                                           ("_revinclude", "Observation:patient")]) == {
        "Observation/o1", "Observation/o2", "Observation/o3", "Observation/o4"}
    assert await _included(db, "Patient", [("_id", "p1,p2"),
                                           ("_revinclude", "DetectedIssue:patient"),
                                           ("_revinclude", "Device:patient")]) == {
        "DetectedIssue/di1", "Device/d1"}
    q = parse_search("Patient", [("_revinclude", "Observation:patient")], strict=True)
    assert build_includes(q, []) == []


async def test_count_and_limit(db: AsyncConnection) -> None:
    q = parse_search("Observation", [("patient", "p1"), ("_count", "2")], strict=True)
    assert (await db.execute(build_count(q))).scalar_one() == 4
    page = (await db.execute(build_select(q))).all()
    assert [r.id for r in page] == ["o1", "o2", "o3"]  # count + 1: a next page exists
    assert orjson.loads(page[0].body)["id"] == "o1"
    q0 = parse_search("Observation", [("_count", "0")], strict=True)
    assert len((await db.execute(build_select(q0))).all()) == 1


async def test_lastn(db: AsyncConnection) -> None:
    hr, temp = TokenValue(LOINC, "8867-4"), TokenValue(LOINC, "8310-5")
    vs = TokenValue(CAT, "vital-signs")

    async def run(patient: str, category: list[TokenValue], codes: list[TokenValue],
                  n: int) -> list[str]:
        stmt = build_lastn(("Patient", patient), category, codes, n)
        wide = [r.id for r in (await db.execute(stmt)).all()]
        # the same from the codes' series (search_exec reads them from series_member)
        keys = [composite_key(patient, c.system, c.code) for c in codes if c.system]
        m = series_member.c
        rows = [tuple(r) for r in await db.execute(
            select(m.pkey, m.set_param).where(m.pkey.in_([end_param(k) for k in keys])))]
        series = {end_param(k): series_of([k], rows) for k in keys}
        stmt = build_lastn(("Patient", patient), category, codes, n, series)
        assert [r.id for r in (await db.execute(stmt)).all()] == wide
        return wide

    assert await run("p1", [], [hr, temp], 1) == ["o4", "o2"]
    assert await run("p1", [vs], [hr, temp], 2) == ["o4", "o3", "o2", "o1"]
    assert await run("p1", [vs], [TokenValue(None, "8867-4")], 5) == ["o2", "o1"]
    assert await run("p1", [vs], [], 1) == ["o4", "o2"]
    assert await run("p2", [vs], [], 1) == ["o5", "o6"]
    assert await run("p2", [TokenValue(CAT, "laboratory")], [], 3) == []


# ---- paging while writing --------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_paging_snapshot_while_inserting(kind: str, tmp_path: Any) -> None:
    eng, schema = await _engine(kind, str(tmp_path))
    try:
        async with eng.begin() as conn:
            await conn.run_sync(metadata.create_all)
            loader = Loader(conn)
            for i in range(5):
                await loader.put(obs(f"a{i}", "Patient/p1", HR, f"2024-05-01T0{i}:00:00Z"))
            params = [("patient", "p1"), ("_sort", "-date"), ("_count", "2")]
            q = parse_search("Observation", params, strict=True)
            snap = (await conn.execute(build_snapshot())).scalar_one()
            q = q.with_page(0, snap)
            page1 = [r.id for r in (await conn.execute(build_select(q)))][:2]
            # newer readings arrive between pages: newest first would shift every page
            await loader.put(obs("late1", "Patient/p1", HR, "2024-05-01T09:00:00Z"))
            await loader.put(obs("late2", "Patient/p1", HR, "2024-05-01T09:30:00Z"))
            nxt = parse_search("Observation", q.with_page(2, snap).to_params(), strict=True)
            page2 = [r.id for r in (await conn.execute(build_select(nxt)))][:2]
            page3 = [r.id for r in (await conn.execute(build_select(q.with_page(4, snap))))]
            assert (page1, page2, page3) == (["a4", "a3"], ["a2", "a1"], ["a0"])
            assert (await conn.execute(build_count(q))).scalar_one() == 5
            fresh = parse_search("Observation", params, strict=True)
            assert [r.id for r in await conn.execute(build_select(fresh))][:2] == [
                "late2", "late1"]
    finally:
        await _drop(eng, schema)


# ---- query plans (SQLite): every access goes through an index, never a table scan ---------

async def _sqlite_plan(db: AsyncConnection, query: str) -> list[str]:
    """The steps of SQLite's plan for an Observation search (skips the test on PostgreSQL)."""
    if db.dialect.name != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    params = [tuple(p.split("=", 1)) for p in query.split("&")]
    stmt = build_select(await with_series(db, parse_search("Observation", params, strict=True)))  # type: ignore[arg-type]
    sql = str(stmt.compile(db.sync_connection, compile_kwargs={"literal_binds": True}))
    return [r[-1] for r in (await db.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)).all()]

@pytest.mark.parametrize(("query", "driver"), [
    # the series' end-time rows from the date bound on (composite.py)
    ("patient=p1&code=http://loinc.org|8867-4&date=ge2024-05-01",
     "COVERING INDEX ix_date_lo (param=? AND lo>?)"),
    # all of the series' end-time rows, streamed in the index's order
    ("subject=Patient/p1&code=http://loinc.org|8867-4", "COVERING INDEX ix_date_lo (param=?)"),
    # patient reads the subject rows, checking each row's target type (shared_rows.py)
    ("patient=p1&code=8867-4", "INDEX ix_reference_target (param=? AND target_id=?)"),
    ("code=http://loinc.org|8867-4&status=final", "INDEX ix_token_code (param=? AND code=?)"),
    ("date=ge2024-05-01&_sort=-date", "INDEX ix_date_lo (param=?)"),
    ("_id=o1,o2&status=final", "resource USING INDEX sqlite_autoindex_resource_1 (type=? AND id=?)"),
])
async def test_sqlite_plans_use_indexes(db: AsyncConnection, query: str, driver: str) -> None:
    plan = await _sqlite_plan(db, query)
    assert any(driver in step for step in plan), plan
    if "_sort" not in query and "date=" not in query and "_id" not in query:  # streamed: no sort
        assert not any("TEMP B-TREE" in step for step in plan), plan
    scans = [s for s in plan if s.startswith("SCAN") and "idx_" in s or s == "SCAN resource"]
    assert scans == [], plan


@pytest.mark.parametrize(("query", "sort_key"), [
    ("patient=p1&_sort=code", "idx_token USING INDEX ix_token_rid (rid=?)"),
    ("code=http://loinc.org|8867-4&_sort=-date", "idx_date USING COVERING INDEX ix_date_rid_cover (rid=?)"),
    ("patient=p1&_sort=-value-quantity", "idx_quantity USING INDEX ix_quantity_rid (rid=?)"),
    ("code=8867-4&_sort=patient", "idx_reference USING INDEX ix_reference_rid (rid=?)"),
])
async def test_sqlite_sorted_pages_read_the_matches_only(db: AsyncConnection, query: str, sort_key: str) -> None:
    """A sorted page visits the matched rows (never every resource of the type) and finds each
    one's sort value by rid (never by walking the parameter's rows in value order)."""
    plan = await _sqlite_plan(db, query)
    assert "SEARCH resource USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
    assert not any("ix_resource_type_updated" in step for step in plan), plan
    assert any(sort_key in step for step in plan), plan


@pytest.mark.parametrize("query", [
    "status=final", "code=http://loinc.org|8867-4", "patient=p1",
    "patient=p1&code=http://loinc.org|8867-4&date=le2024-05-01",
    # (with date=ge the series' end-time rows from the bound on are read and sorted instead)
])
async def test_sqlite_single_key_pages_stream_without_sorting(db: AsyncConnection,
                                                              query: str) -> None:
    plan = await _sqlite_plan(db, query)
    assert not any("TEMP B-TREE" in s for s in plan), plan
    assert not any("LIST SUBQUERY" in s for s in plan), plan


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_each_resource_once_when_two_index_rows_match(kind: str, tmp_path: Any) -> None:
    eng, schema = await _engine(kind, str(tmp_path))
    try:
        async with eng.begin() as conn:
            await conn.run_sync(metadata.create_all)
            loader = Loader(conn)
            twice = [coding(LOINC, "X1"), coding("urn:other", "X1"), coding(LOINC, "X1")]
            await loader.put(obs("dup", "Patient/p1", twice, "2024-05-01T08:00:00Z"))
            await loader.put(obs("single", "Patient/p1", [coding(LOINC, "X1")],
                                 "2024-05-01T09:00:00Z"))
            for query in (["code", "X1"], ["code", "http://loinc.org|X1"]):
                assert await ids(conn, "Observation", [tuple(query)]) == ["dup", "single"]
            both = [("patient", "p1"), ("code", "http://loinc.org|X1")]
            assert await ids(conn, "Observation", both) == ["dup", "single"]
            q = parse_search("Observation", [("code", "X1"), ("_count", "1")], strict=True)
            assert [r.id for r in await conn.execute(build_select(q.with_page(1, None)))] == [
                "single"]
    finally:
        await _drop(eng, schema)
