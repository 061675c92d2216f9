"""Search through REST (GET and POST _search) on SQLite and PostgreSQL: every parameter type,
prefixes, modifiers, result parameters, paging links under concurrent writes, includes,
chains and ``Observation/$lastn``."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

LOINC = "http://loinc.org"
VITALS = "http://terminology.hl7.org/CodeSystem/observation-category"
HR, SPO2, TEMP = "8867-4", "59408-5", "8310-5"


def ids(bundle) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def link(bundle, relation: str) -> str | None:
    return next((x["url"] for x in bundle.get("link", []) if x["relation"] == relation), None)


def rel(url: str) -> str:
    """An absolute link as a path+query relative to the test client's base."""
    parts = urlsplit(url)
    return parts.path.removeprefix("/fhir/") + ("?" + parts.query if parts.query else "")


async def put(client, res: dict) -> dict:
    r = await client.put(f"{res['resourceType']}/{res['id']}", json=res)
    assert r.status_code in (200, 201), r.text
    return r.json()


def obs(id_: str, patient: str, code: str, when: str, value: float | None = None, *, unit: str = "/min",
        category: str = "vital-signs", status: str = "final", device: str | None = None) -> dict:
    o: dict = {
        "resourceType": "Observation", "id": id_, "status": status,
        "category": [{"coding": [{"system": VITALS, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}], "text": f"code {code}"},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
    }
    if value is not None:
        o["valueQuantity"] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    if device:
        o["device"] = {"reference": f"Device/{device}"}
    return o


@pytest.fixture
async def ward(client):
    """Two patients, one device, a handful of observations with known values and times."""
    await put(client, {"resourceType": "Patient", "id": "p1", "active": True, "gender": "female",
                       "birthDate": "1970-05-17",
                       "identifier": [{"system": "urn:mrn", "value": "MRN-1"}],
                       "name": [{"family": "Österberg", "given": ["Anna"]}]})
    await put(client, {"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1982-01-02",
                       "identifier": [{"system": "urn:mrn", "value": "MRN-2"}],
                       "name": [{"family": "Osterman", "given": ["Bo"]}]})
    await put(client, {"resourceType": "Device", "id": "d1", "status": "active", "manufacturer": "Philips"})
    rows = [
        obs("o1", "p1", HR, "2024-03-01T10:00:00Z", 72, device="d1"),
        obs("o2", "p1", HR, "2024-03-01T10:05:00Z", 80, device="d1"),
        obs("o3", "p1", HR, "2024-03-01T10:10:00Z", 95),
        obs("o4", "p1", SPO2, "2024-03-01T10:00:00Z", 97, unit="%"),
        obs("o5", "p1", SPO2, "2024-03-01T10:10:00Z", 91, unit="%"),
        obs("o6", "p2", HR, "2024-03-01T11:00:00Z", 60),
        obs("o7", "p2", TEMP, "2024-03-02T08:00:00Z", 37.5, unit="Cel", category="exam", status="amended"),
    ]
    for o in rows:
        await put(client, o)
    return rows


async def search(client, query: str, **kw) -> dict:
    r = await client.get(query, **kw)
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["resourceType"] == "Bundle" and b["type"] == "searchset"
    return b


async def test_token_search_get_and_post_search_agree(client, ward):
    got = await search(client, f"Observation?code={LOINC}|{HR}")
    assert sorted(ids(got)) == ["o1", "o2", "o3", "o6"]
    assert got["total"] == 4
    assert all(e["fullUrl"].startswith("http://testserver/fhir/Observation/") for e in got["entry"])
    r = await client.post("Observation/_search", content=f"code={LOINC}|{HR}",
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and sorted(ids(r.json())) == sorted(ids(got))
    # GET parameters and a POST body combine
    r = await client.post("Observation/_search?patient=p2", content=f"code={HR}",
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert ids(r.json()) == ["o6"]
    assert sorted(ids(await search(client, f"Observation?code={HR},{SPO2}&patient=p1"))) == [
        "o1", "o2", "o3", "o4", "o5"]
    assert ids(await search(client, f"Observation?code=|{HR}")) == []  # explicitly no system
    assert ids(await search(client, "Observation?status=amended")) == ["o7"]


async def test_token_modifiers_not_text_missing(client, ward):
    assert sorted(ids(await search(client, "Observation?status:not=final"))) == ["o7"]
    assert sorted(ids(await search(client, f"Observation?code:not={HR}&patient=p1"))) == ["o4", "o5"]
    assert sorted(ids(await search(client, f"Observation?code:text=code%20{SPO2}"))) == ["o4", "o5"]
    assert sorted(ids(await search(client, "Observation?device:missing=false"))) == ["o1", "o2"]
    assert len(ids(await search(client, "Observation?device:missing=true"))) == 5
    assert ids(await search(client, "Patient?active:missing=true")) == ["p2"]


async def test_string_search_default_exact_contains(client, ward):
    # default: case- and accent-insensitive prefix
    assert sorted(ids(await search(client, "Patient?name=oster"))) == ["p1", "p2"]
    assert ids(await search(client, "Patient?family=osterm")) == ["p2"]
    assert ids(await search(client, "Patient?family:exact=Österberg")) == ["p1"]
    assert ids(await search(client, "Patient?family:exact=osterberg")) == []
    assert sorted(ids(await search(client, "Patient?name:contains=TER"))) == ["p1", "p2"]
    assert ids(await search(client, "Patient?given:contains=nn")) == ["p1"]
    assert ids(await search(client, "Device?manufacturer=phil")) == ["d1"]


async def test_date_prefixes(client, ward):
    q = "Observation?patient=p1&code=" + HR + "&date="
    assert ids(await search(client, q + "2024-03-01T10:05:00Z")) == ["o2"]
    assert sorted(ids(await search(client, q + "ge2024-03-01T10:05:00Z"))) == ["o2", "o3"]
    assert ids(await search(client, q + "gt2024-03-01T10:05:00Z")) == ["o3"]
    assert sorted(ids(await search(client, q + "le2024-03-01T10:05:00Z"))) == ["o1", "o2"]
    assert ids(await search(client, q + "lt2024-03-01T10:05:00Z")) == ["o1"]
    assert sorted(ids(await search(client, q + "ne2024-03-01T10:05:00Z"))) == ["o1", "o3"]
    assert ids(await search(client, q + "sa2024-03-01T10:07:00Z")) == ["o3"]
    assert sorted(ids(await search(client, q + "eb2024-03-01T10:07:00Z"))) == ["o1", "o2"]
    assert len(ids(await search(client, "Observation?date=2024-03-01"))) == 6  # day precision
    assert ids(await search(client, "Observation?date=2024-03-02")) == ["o7"]
    assert sorted(ids(await search(client, "Patient?birthdate=lt1980"))) == ["p1"]
    # a one-hour window with two clauses, as a dashboard asks
    got = await search(client, "Observation?date=ge2024-03-01T10:01:00Z&date=lt2024-03-01T11:01:00Z")
    assert sorted(ids(got)) == ["o2", "o3", "o5", "o6"]
    r = await client.get("Observation?date=yesterday")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


async def test_quantity_prefixes_and_units(client, ward):
    assert sorted(ids(await search(client, "Observation?value-quantity=gt79"))) == ["o2", "o3", "o4", "o5"]
    assert ids(await search(client, "Observation?value-quantity=80||/min")) == ["o2"]
    assert ids(await search(client, "Observation?value-quantity=le91|http://unitsofmeasure.org|%25")) == ["o5"]
    # the implicit range of 37.5 is [37.45, 37.55); ap is within 10 %
    assert ids(await search(client, "Observation?value-quantity=37.5|http://unitsofmeasure.org|Cel")) == ["o7"]
    assert ids(await search(client, "Observation?value-quantity=ap36|http://unitsofmeasure.org|Cel")) == ["o7"]
    # UCUM-normalised: a pressure stored in mm[Hg] is found by a value in kPa
    await put(client, obs("bp", "p2", "8480-6", "2024-03-01T11:00:00Z", 750, unit="mm[Hg]"))
    assert ids(await search(client, "Observation?value-quantity=ge99|http://unitsofmeasure.org|kPa")) == ["bp"]
    assert ids(await search(client, "Observation?value-quantity=ge101|http://unitsofmeasure.org|kPa")) == []
    r = await client.get("Observation?value-quantity=abc")
    assert r.status_code == 400


async def test_number_search(client, ward):
    for i, p in enumerate(["0.05", "0.25", "0.50", "0.9"]):
        await put(client, {"resourceType": "RiskAssessment", "id": f"r{i}", "status": "final",
                           "subject": {"reference": "Patient/p1"},
                           "prediction": [{"probabilityDecimal": float(p)}]})
    assert ids(await search(client, "RiskAssessment?probability=0.5")) == ["r2"]
    assert sorted(ids(await search(client, "RiskAssessment?probability=ge0.25"))) == ["r1", "r2", "r3"]
    assert ids(await search(client, "RiskAssessment?probability=lt0.1")) == ["r0"]
    assert sorted(ids(await search(client, "RiskAssessment?probability=ne0.5&patient=p1"))) == ["r0", "r1", "r3"]


async def test_reference_forms_and_chain(client, ward):
    assert len(ids(await search(client, "Observation?subject=Patient/p1"))) == 5
    assert len(ids(await search(client, "Observation?patient=p1"))) == 5
    assert len(ids(await search(client, "Observation?subject:Patient=p1"))) == 5
    full = "http://testserver/fhir/Patient/p2"
    assert sorted(ids(await search(client, f"Observation?subject={full}"))) == ["o6", "o7"]
    assert sorted(ids(await search(client, "Observation?device=Device/d1"))) == ["o1", "o2"]
    got = await search(client, "Observation?subject:Patient.identifier=urn:mrn|MRN-2")
    assert sorted(ids(got)) == ["o6", "o7"]
    got = await search(client, "Observation?patient.identifier=MRN-1&code=" + SPO2)
    assert sorted(ids(got)) == ["o4", "o5"]
    got = await search(client, "Observation?patient.name=osterm")
    assert sorted(ids(got)) == ["o6", "o7"]


async def test_id_and_last_updated(client, ward):
    assert sorted(ids(await search(client, "Observation?_id=o1,o7"))) == ["o1", "o7"]
    assert ids(await search(client, "Observation?_id=o1&code=" + SPO2)) == []
    assert len(ids(await search(client, "Observation?_lastUpdated=gt2000-01-01"))) == 7
    assert ids(await search(client, "Observation?_lastUpdated=lt2000-01-01")) == []
    o3 = (await client.get("Observation/o3")).json()
    got = await search(client, f"Observation?_lastUpdated=ge{o3['meta']['lastUpdated']}")
    assert "o3" in ids(got) and "o1" not in ids(got)


async def test_sort_multi_key_and_descending(client, ward):
    got = await search(client, "Observation?patient=p1&_sort=code,-date")
    assert ids(got) == ["o5", "o4", "o3", "o2", "o1"]  # 59408-5 < 8867-4 as text
    got = await search(client, "Observation?patient=p1&_sort=-value-quantity")
    assert ids(got) == ["o4", "o3", "o5", "o2", "o1"]
    got = await search(client, "Observation?_sort=date,_id")
    assert ids(got)[:2] == ["o1", "o4"] and ids(got)[-1] == "o7"
    got = await search(client, "Patient?_sort=-birthdate")
    assert ids(got) == ["p2", "p1"]
    assert "_sort=code,-date" in link(await search(client, "Observation?patient=p1&_sort=code,-date"), "self")


async def test_paging_links_survive_concurrent_writes(client, ward):
    first = await search(client, "Observation?_sort=-date&_count=3")
    assert ids(first) == ["o7", "o6", "o3"] and link(first, "previous") is None
    nxt = link(first, "next")
    assert nxt and "_count=3" in nxt and "_sort=-date" in nxt
    # new matches written between pages, some sorting first, must not shift the pages
    await put(client, obs("new1", "p1", HR, "2030-01-01T00:00:00Z", 70))
    await put(client, obs("new2", "p2", HR, "2001-01-01T00:00:00Z", 70))
    second = await search(client, rel(nxt))
    assert ids(second) == ["o5", "o2", "o1"]  # ties on date keep write order
    # an update between pages keeps its place (and its new content is what is served)
    await put(client, {**obs("o4", "p1", SPO2, "2024-03-01T10:00:00Z", 99, unit="%")})
    third = await search(client, rel(link(second, "next")))
    assert ids(third) == ["o4"] and third["entry"][0]["resource"]["valueQuantity"]["value"] == 99
    assert link(third, "next") is None
    back = await search(client, rel(link(third, "previous")))
    assert ids(back) == ids(second)
    again = await search(client, rel(link(second, "self")))
    assert ids(again) == ids(second)
    fresh = await search(client, "Observation?_sort=-date&_count=3")
    assert ids(fresh)[0] == "new1"


async def test_count_total_and_summary_count(client, ward):
    got = await search(client, "Observation?_count=2")
    assert len(got["entry"]) == 2 and link(got, "next")
    got = await search(client, "Observation?_count=2&_total=accurate")
    assert got["total"] == 7
    got = await search(client, "Observation?_count=2&_total=none")
    assert "total" not in got
    got = await search(client, "Observation?patient=p1&_summary=count")
    assert got["total"] == 5 and "entry" not in got  # FHIR JSON has no empty arrays
    got = await search(client, "Observation?_count=0")
    assert "entry" not in got and got["total"] == 7
    got = await search(client, "Observation?patient=nobody")
    assert "entry" not in got
    r = await client.get("Observation?_count=-1")
    assert r.status_code == 400
    r = await client.get("Observation?_total=maybe")
    assert r.status_code == 400


async def test_include_and_revinclude(client, ward):
    got = await search(client, "Observation?_id=o1,o2&_include=Observation:patient&_include=Observation:device")
    modes = sorted((e["search"]["mode"], e["resource"]["resourceType"], e["resource"]["id"]) for e in got["entry"])
    assert modes == [("include", "Device", "d1"), ("include", "Patient", "p1"),
                     ("match", "Observation", "o1"), ("match", "Observation", "o2")]
    assert got["total"] == 2  # included resources are not counted
    got = await search(client, "Patient?_id=p2&_revinclude=Observation:subject")
    assert ids(got) == ["p2"]
    assert sorted(e["resource"]["id"] for e in got["entry"] if e["search"]["mode"] == "include") == ["o6", "o7"]
    got = await search(client, "Device?_revinclude=Observation:device")
    assert len(got["entry"]) == 3
    r = await client.get("Observation?_include=Observation:nope")
    assert r.status_code == 400


async def test_unknown_parameters_lenient_and_strict(client, ward):
    got = await search(client, "Observation?patient=p2&bogus=1")
    assert sorted(ids(got)) == ["o6", "o7"]
    assert "bogus" not in link(got, "self")
    warn = [e for e in got["entry"] if e["search"]["mode"] == "outcome"]
    assert warn and "bogus" in warn[0]["resource"]["issue"][0]["diagnostics"]
    got = await search(client, "Observation?patient=p2&bogus=1", headers={"prefer": "handling=lenient"})
    assert sorted(ids(got)) == ["o6", "o7"]
    r = await client.get("Observation?patient=p2&bogus=1", headers={"prefer": "handling=strict"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert "bogus" in r.json()["issue"][0]["diagnostics"]
    r = await client.get("Observation?patient=p2&_sort=bogus", headers={"prefer": "handling=strict"})
    assert r.status_code == 400
    r = await client.get("Observation?code:bogus=x")
    assert r.status_code == 400  # an unsupported modifier is always an error
    r = await client.get("Observation?patient=p2", headers={"prefer": "handling=strict"})
    assert r.status_code == 200


async def test_search_on_unsearchable_type_and_bad_values(client, ward):
    r = await client.get("Medication?code=x")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    r = await client.get("Observation?value-quantity=gtx")
    assert r.status_code == 400
    r = await client.get("Observation?device:missing=perhaps")
    assert r.status_code == 400


async def test_lastn(client, ward):
    got = await search(client, f"Observation/$lastn?patient=p1&category={VITALS}|vital-signs")
    assert sorted(ids(got)) == ["o3", "o5"]
    got = await search(client, "Observation/$lastn?patient=Patient/p1&category=vital-signs&max=2")
    assert sorted(ids(got)) == ["o2", "o3", "o4", "o5"]
    got = await search(client, f"Observation/$lastn?patient=p1&code={LOINC}|{HR}&max=2")
    assert ids(got) == ["o3", "o2"]
    got = await search(client, f"Observation/$lastn?subject=Patient/p1&code={HR},{SPO2}")
    assert sorted(ids(got)) == ["o3", "o5"]
    got = await search(client, "Observation/$lastn?patient=p2&category=exam")
    assert ids(got) == ["o7"]
    await client.delete("Observation/o3")
    got = await search(client, f"Observation/$lastn?patient=p1&code={HR}")
    assert ids(got) == ["o2"]
    for bad in ("Observation/$lastn?code=" + HR, "Observation/$lastn?patient=p1",
                f"Observation/$lastn?patient=p1&code={HR}&max=0", f"Observation/$lastn?patient=p1&code={HR}&max=x"):
        r = await client.get(bad)
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", bad


def _example_value(ptype: str) -> str:
    return {"token": "x", "string": "x", "date": "ge2020-01-01", "reference": "Patient/x",
            "quantity": "gt1", "number": "gt0.5", "uri": "http://x"}[ptype]


async def test_capability_search_params_are_all_accepted(client):
    cs = (await client.get("metadata")).json()
    checked = 0
    for res in cs["rest"][0]["resource"]:
        for sp in res.get("searchParam", []):
            r = await client.get(f"{res['type']}?{sp['name']}={_example_value(sp['type'])}",
                                 headers={"prefer": "handling=strict"})
            assert r.status_code == 200, (res["type"], sp, r.text)
            checked += 1
        for inc in res.get("searchInclude", []):
            r = await client.get(f"{res['type']}?_include={inc}", headers={"prefer": "handling=strict"})
            assert r.status_code == 200, (res["type"], inc, r.text)
        for inc in res.get("searchRevInclude", []):
            r = await client.get(f"{res['type']}?_revinclude={inc}", headers={"prefer": "handling=strict"})
            assert r.status_code == 200, (res["type"], inc, r.text)
    assert checked > 50
    searchable = {r["type"] for r in cs["rest"][0]["resource"] if r.get("searchParam")}
    assert {"Patient", "Observation", "Device", "Encounter", "Location", "DetectedIssue", "RiskAssessment",
            "Subscription", "AuditEvent"} <= searchable
    for res in cs["rest"][0]["resource"]:
        codes = {i["code"] for i in res["interaction"]}
        assert ("search-type" in codes) == bool(res.get("searchParam")), res["type"]
    unsearchable = next(r["type"] for r in cs["rest"][0]["resource"] if not r.get("searchParam"))
    assert (await client.get(unsearchable)).status_code == 400


async def test_summary_and_elements_subset_results(client, ward):
    await put(client, {"resourceType": "Patient", "id": "p3", "gender": "other", "birthDate": "1990-01-01",
                       "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
                       "photo": [{"contentType": "image/png", "data": "AAAA"}]})
    got = await search(client, "Patient?_id=p3&_summary=true")
    res = got["entry"][0]["resource"]
    assert res["gender"] == "other" and "photo" not in res and "text" not in res
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"} in \
        res["meta"]["tag"]
    res = (await search(client, "Patient?_id=p3&_summary=data"))["entry"][0]["resource"]
    assert "text" not in res and res["photo"]
    res = (await search(client, "Patient?_id=p3&_summary=text"))["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "text"}
    got = await search(client, "Observation?_id=o7&_elements=value,status")
    res = got["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "valueQuantity", "status"}
    assert "_elements=value,status" in link(got, "self")
    full = (await search(client, "Observation?_id=o7"))["entry"][0]["resource"]
    assert "SUBSETTED" not in str(full["meta"]) and full["code"]


async def test_series_search_and_lastn_fixed_sql_agree_with_the_general_plans(client, ward):
    """``patient&code&date=ge|gt`` and ``$lastn`` by one code run as fixed SQL (fastread.py);
    ``_total=accurate`` and a code without system take the general plans: same answers."""
    for i in range(5):
        await put(client, obs(f"h{i}", "p1", HR, f"2024-03-01T12:0{i}:00Z", 70 + i))
    await put(client, obs("h9", "p2", HR, "2024-03-01T12:09:00Z", 99))  # another patient
    await client.delete("Observation/h2")
    late: list[str] = []  # written while paging: after the first page's snapshot
    for prefix in ("ge", "gt"):
        earlier = list(late)
        base = f"Observation?patient=p1&code={LOINC}|{HR}&date={prefix}2024-03-01T10:05:00Z&_count=2"
        pages, url = [], base
        while url:
            got = await search(client, url)
            pages.append(ids(got))
            url = link(got, "next") and rel(link(got, "next"))
            late.append(f"late{len(pages)}{prefix}")
            await put(client, obs(late[-1], "p1", HR, "2024-03-01T13:00:00Z"))
        want = (["o2"] if prefix == "ge" else []) + ["o3", "h0", "h1", "h3", "h4"] + earlier
        assert [i for p in pages for i in p] == want
        general = await search(client, base.replace("_count=2", "_count=50") + "&_total=accurate")
        assert ids(general)[: len(want)] == want
    got = await search(client, f"Observation/$lastn?patient=p1&code={LOINC}|{HR}&max=3")
    assert ids(got)[:1] and ids(got) == ids(await search(client, f"Observation/$lastn?patient=p1&code={HR}&max=3"))
    await client.delete(f"Observation/{ids(got)[0]}")
    after = await search(client, f"Observation/$lastn?patient=p1&code={LOINC}|{HR}&max=1")
    assert ids(after) == [ids(got)[1]]
    assert (await client.get(f"Observation/{ids(got)[0]}")).status_code == 410
    assert (await client.get("Observation/h0")).json()["id"] == "h0"
