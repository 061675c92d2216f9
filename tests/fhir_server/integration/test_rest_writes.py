"""Writes through REST on SQLite and PostgreSQL: conditional operations, If-Match, Prefer,
transaction and batch Bundles, history, error statuses and decimal precision."""

from __future__ import annotations

import asyncio
import uuid

import orjson

HR = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}


def patient(mrn: str, **extra) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}], **extra}


def observation(subject: str, value: str = "72", **extra) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": HR, "subject": {"reference": subject},
            "effectiveDateTime": "2024-03-01T10:00:00Z",
            "valueQuantity": {"value": float(value), "unit": "/min"}, **extra}


def outcome(resp, status: int) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert resp.headers["content-type"].startswith("application/fhir+json")
    assert body["issue"][0]["severity"] in ("error", "fatal") and body["issue"][0]["code"]
    return body


async def count(client, query: str) -> int:
    r = await client.get(query + ("&" if "?" in query else "?") + "_summary=count")
    assert r.status_code == 200, r.text
    return r.json()["total"]


async def test_conditional_create(client):
    hdr = {"if-none-exist": "identifier=urn:mrn|A1"}
    r = await client.post("Patient", json=patient("A1"), headers=hdr)
    assert r.status_code == 201
    pid = r.json()["id"]
    r = await client.post("Patient", json=patient("A1", gender="male"), headers=hdr)
    assert r.status_code == 200 and r.json()["id"] == pid and "gender" not in r.json()
    assert r.headers["etag"] == 'W/"1"'
    await client.post("Patient", json=patient("A1"))  # now two match
    outcome(await client.post("Patient", json=patient("A1"), headers=hdr), 412)
    outcome(await client.post("Patient", json=patient("A1"), headers={"if-none-exist": "nonsense=1"}), 400)
    assert await count(client, "Patient?identifier=urn:mrn|A1") == 2


async def test_conditional_update_and_delete(client):
    r = await client.put("Patient?identifier=urn:mrn|B1", json=patient("B1"))
    assert r.status_code == 201
    pid = r.json()["id"]
    r = await client.put("Patient?identifier=urn:mrn|B1", json=patient("B1", gender="female"))
    assert r.status_code == 200 and r.json()["id"] == pid and r.headers["etag"] == 'W/"2"'
    outcome(await client.put("Patient?identifier=urn:mrn|B1", json={**patient("B1"), "id": "other"}), 400)
    await client.post("Patient", json=patient("B1"))
    outcome(await client.put("Patient?identifier=urn:mrn|B1", json=patient("B1")), 412)
    outcome(await client.delete("Patient?identifier=urn:mrn|B1"), 412)
    r = await client.delete(f"Patient?_id={pid}")
    assert r.status_code == 200
    outcome(await client.get(f"Patient/{pid}"), 410)
    r = await client.delete("Patient?identifier=urn:mrn|none")
    assert r.status_code == 200  # nothing matched: nothing to do
    outcome(await client.put("Patient", json=patient("B1")), 400)  # no criteria


async def test_if_match(client):
    r = await client.put("Patient/im", json={**patient("C1"), "id": "im"})
    assert r.headers["etag"] == 'W/"1"'
    outcome(await client.put("Patient/im", json={**patient("C1"), "id": "im"}, headers={"if-match": 'W/"2"'}), 412)
    outcome(await client.delete("Patient/im", headers={"if-match": 'W/"7"'}), 412)
    ops = orjson.dumps([{"op": "add", "path": "/active", "value": True}])
    patch_hdr = {"content-type": "application/json-patch+json", "if-match": 'W/"9"'}
    outcome(await client.patch("Patient/im", content=ops, headers=patch_hdr), 412)
    outcome(await client.put("Patient/im", json={**patient("C1"), "id": "im"}, headers={"if-match": "banana"}), 400)
    r = await client.put("Patient/im", json={**patient("C1"), "id": "im"}, headers={"if-match": 'W/"1"'})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
    r = await client.delete("Patient/im", headers={"if-match": 'W/"2"'})
    assert r.status_code == 200
    r = await client.get("Patient/im/_history/2")
    assert r.status_code == 200


async def test_prefer_return_on_every_write(client):
    r = await client.post("Patient", json=patient("D1"), headers={"prefer": "return=representation"})
    assert r.status_code == 201 and r.json()["identifier"][0]["value"] == "D1"
    pid = r.json()["id"]
    res = {**patient("D1"), "id": pid}
    r = await client.put(f"Patient/{pid}", json=res, headers={"prefer": "return=minimal"})
    assert r.status_code == 200 and r.content == b"" and r.headers["etag"] == 'W/"2"'
    r = await client.put(f"Patient/{pid}", json=res, headers={"prefer": "return=OperationOutcome"})
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "information"
    ops = orjson.dumps([{"op": "add", "path": "/active", "value": True}])
    r = await client.patch(f"Patient/{pid}", content=ops,
                           headers={"content-type": "application/json-patch+json", "prefer": "return=minimal"})
    assert r.status_code == 200 and r.content == b"" and r.headers["etag"] == 'W/"4"'
    r = await client.get(f"Patient/{pid}")
    assert r.json()["active"] is True and r.json()["meta"]["versionId"] == "4"


async def test_error_statuses_are_operation_outcomes(client):
    outcome(await client.post("Patient", content=b"[1,2"), 400)
    outcome(await client.post("Patient", content=b""), 400)
    outcome(await client.get("Patient/missing"), 404)
    outcome(await client.get("NotAType"), 404)
    outcome(await client.get("Patient/x/_history/1/extra"), 405)
    outcome(await client.delete("metadata"), 404)
    outcome(await client.request("PURGE", "Patient/x"), 405)
    outcome(await client.post("Patient/x", json=patient("E1")), 405)
    pid = (await client.post("Patient", json=patient("E1"))).json()["id"]
    await client.delete(f"Patient/{pid}")
    outcome(await client.get(f"Patient/{pid}"), 410)
    outcome(await client.put(f"Patient/{pid}", json={**patient("E1"), "id": pid}, headers={"if-match": 'W/"1"'}), 412)
    bad = orjson.dumps([{"op": "remove", "path": "/nothing/here"}])
    pid = (await client.post("Patient", json=patient("E2"))).json()["id"]
    outcome(await client.patch(f"Patient/{pid}", content=bad,
                               headers={"content-type": "application/json-patch+json"}), 422)
    # an invalid resource never reaches storage
    invalid = {"resourceType": "Observation", "status": ["final"], "code": HR}
    outcome(await client.post("Observation", json=invalid), 400)
    assert await count(client, "Observation") == 0


async def test_conflict_409_for_one_resource_twice_in_a_transaction(client):
    entry = {"resource": {**patient("F1"), "id": "dup"}, "request": {"method": "PUT", "url": "Patient/dup"}}
    r = await client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]})
    outcome(r, 409)
    outcome(await client.get("Patient/dup"), 404)


async def test_decimal_precision_kept_everywhere(client):
    raw = (b'{"resourceType":"Observation","status":"final","code":{"text":"t"},'
           b'"valueQuantity":{"value":1.50,"unit":"mmol/L"},"component":[{"code":{"text":"c"},'
           b'"valueQuantity":{"value":0.100}}]}')
    r = await client.post("Observation", content=raw)
    assert r.status_code == 201 and b'"value":1.50' in r.content and b'"value":0.100' in r.content
    oid = r.json()["id"]
    for path in (f"Observation/{oid}", f"Observation/{oid}/_history/1", "Observation?code:text=t",
                 f"Observation/{oid}/_history", "_history"):
        r = await client.get(path)
        assert b'"value":1.50' in r.content and b'"value":0.100' in r.content, path
    bundle = (b'{"resourceType":"Bundle","type":"transaction","entry":[{"resource":'
              + raw + b',"request":{"method":"POST","url":"Observation"}}]}')
    r = await client.post("", content=bundle)
    assert r.status_code == 200 and b'"value":1.50' in r.content
    loc = r.json()["entry"][0]["response"]["location"]
    r = await client.get(loc.split("/fhir/")[1].split("/_history")[0])
    assert b'"value":1.50' in r.content


async def test_numbers_beyond_64_bits_are_stored_as_written(client):
    """A 30-digit decimal without a point parses to an integer orjson cannot write: was a 500."""
    raw = (b'{"resourceType":"Observation","status":"final","code":{"text":"big"},'
           b'"valueQuantity":{"value":123456789012345678901234567890,"unit":"1"}}')
    r = await client.post("Observation", content=raw)
    assert r.status_code == 201, r.text
    assert b'"value":123456789012345678901234567890' in r.content
    r = await client.get(f"Observation/{r.json()['id']}")
    assert b'"value":123456789012345678901234567890' in r.content
    r = await client.get("Observation", params={"value-quantity": "gt1e29"})
    assert r.status_code == 200 and len(r.json()["entry"]) == 1


def txn(*entries, kind: str = "transaction") -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


async def test_transaction_rewrites_urn_uuid_and_returns_in_entry_order(client):
    pu, ou = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    b = txn(
        {"fullUrl": ou, "resource": observation(pu),
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": pu, "resource": patient("T1"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Device", "id": "dev1", "status": "active",
                      "patient": {"reference": pu}}, "request": {"method": "PUT", "url": "Device/dev1"}},
    )
    r = await client.post("", json=b)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response" and len(out["entry"]) == 3
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert [s.split()[0] for s in statuses] == ["201", "201", "201"]
    assert out["entry"][0]["response"]["location"].startswith("http://testserver/fhir/Observation/")
    assert out["entry"][0]["response"]["etag"] == 'W/"1"'
    pid = out["entry"][1]["resource"]["id"]
    oid = out["entry"][0]["resource"]["id"]
    o = (await client.get(f"Observation/{oid}")).json()
    assert o["subject"]["reference"] == f"Patient/{pid}"
    assert (await client.get("Device/dev1")).json()["patient"]["reference"] == f"Patient/{pid}"
    r = await client.get(f"Observation?subject=Patient/{pid}")
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [oid]


async def test_transaction_posted_to_the_base_without_a_slash_is_served_not_redirected(client):
    b = txn({"resource": patient("NS1"), "request": {"method": "POST", "url": "Patient"}})
    r = await client.post(str(client.base_url).rstrip("/"), json=b, follow_redirects=False)
    assert r.status_code == 200, (r.status_code, r.headers.get("location"))
    assert r.json()["type"] == "transaction-response"
    assert await count(client, "Patient?identifier=NS1") == 1


async def test_transaction_is_all_or_nothing(client):
    await client.put("Patient/keep", json={**patient("K1"), "id": "keep"})
    await client.put("Patient/gone", json={**patient("K2"), "id": "gone"})
    before = await count(client, "Patient")
    bad = txn(
        {"resource": patient("T2"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {**patient("K1"), "id": "keep", "gender": "male"},
         "request": {"method": "PUT", "url": "Patient/keep"}},
        {"request": {"method": "DELETE", "url": "Patient/gone"}},
        {"resource": {**patient("K3"), "id": "new"}, "request": {"method": "PUT", "url": "Patient/new",
                                                                 "ifMatch": 'W/"5"'}},
    )
    body = outcome(await client.post("", json=bad), 412)
    assert "entry[3]" in body["issue"][0]["diagnostics"]
    assert await count(client, "Patient") == before
    assert (await client.get("Patient/keep")).json()["meta"]["versionId"] == "1"
    assert (await client.get("Patient/gone")).status_code == 200
    post = {"method": "POST", "url": "Patient"}
    invalid = txn({"resource": patient("T3"), "request": post},
                  {"resource": {"resourceType": "Patient", "gender": 3}, "request": post})
    outcome(await client.post("", json=invalid), 400)
    outcome(await client.post("", json=txn({"request": {"method": "GET", "url": "Patient/none"}})), 404)
    assert await count(client, "Patient") == before
    h = (await client.get("_history")).json()
    assert h["total"] == 2  # only the two first PUTs ever reached the change log


async def test_transaction_shell_errors_name_the_entry(client):
    """Entries alike are validated once; a failure still names the first entry that has it."""
    post = {"method": "POST", "url": "Patient"}
    bad = {**post, "ifNoneMatch": ["not", "a", "string"]}
    b = txn(*[{"resource": patient(f"S{i}"), "request": post} for i in range(3)],
            {"resource": patient("S3"), "request": bad}, {"resource": patient("S4"), "request": bad})
    body = outcome(await client.post("", json=b), 400)
    assert "Bundle.entry.3.request.ifNoneMatch" in body["issue"][0]["diagnostics"]
    assert await count(client, "Patient?identifier=urn:mrn|S0") == 0


async def test_transaction_empty_members_are_refused_and_nothing_is_written(client):
    post = {"method": "POST", "url": "Patient"}
    ok = {"resource": patient("E0"), "request": post}
    cases = [
        (txn(ok, {"resource": {**patient("E1"), "name": []}, "request": post}), "Patient.name"),
        (txn(ok, {}), "Bundle.entry[1]"),
        (txn(ok, {"resource": patient("E2"), "request": post, "response": {}}), "Bundle.entry[1].response"),
        ({**txn(ok), "meta": {}}, "Bundle.meta"),
        ({"resourceType": "Bundle", "type": "transaction", "entry": []}, "Bundle.entry"),
    ]
    for bundle, where in cases:
        body = outcome(await client.post("", json=bundle), 400)
        assert body["issue"][0]["expression"] == [where], (where, body)
    assert await count(client, "Patient") == 0
    # no entry at all is a valid, empty transaction; an entry holding only a resource is not empty
    r = await client.post("", json={"resourceType": "Bundle", "type": "transaction"})
    assert r.status_code == 200, r.text
    r = await client.post("", json={"resourceType": "Bundle", "type": "batch", "entry": [{"resource": patient("E3")}]})
    assert r.status_code == 200 and r.json()["entry"][0]["response"]["status"].startswith("400"), r.text


async def test_transaction_conditional_entries(client):
    existing = (await client.post("Patient", json=patient("X1"))).json()["id"]
    await client.post("Observation", json=observation(f"Patient/{existing}", "50"))
    pu = f"urn:uuid:{uuid.uuid4()}"
    cond_put = {"method": "PUT", "url": "Patient?identifier=urn:mrn|X2"}
    b = txn(
        {"fullUrl": pu, "resource": patient("X1"),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|X1"}},
        {"resource": observation(pu, "60"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": patient("X2", gender="other"), "request": cond_put},
        {"request": {"method": "DELETE", "url": f"Observation?subject=Patient/{existing}&value-quantity=50"}},
        {"request": {"method": "GET", "url": f"Patient/{existing}"}},
    )
    r = await client.post("", json=b)
    assert r.status_code == 200, r.text
    out = r.json()["entry"]
    assert out[0]["response"]["status"].startswith("200") and out[0]["resource"]["id"] == existing
    assert out[1]["response"]["status"].startswith("201")
    assert out[1]["resource"]["subject"]["reference"] == f"Patient/{existing}"
    assert out[2]["response"]["status"].startswith("201")
    assert out[3]["response"]["status"].startswith(("200", "204"))
    assert out[4]["response"]["status"].startswith("200") and out[4]["resource"]["id"] == existing
    obs = (await client.get(f"Observation?subject=Patient/{existing}")).json()["entry"]
    assert [e["resource"]["valueQuantity"]["value"] for e in obs] == [60]
    x2 = (await client.get("Patient?identifier=urn:mrn|X2")).json()["entry"]
    assert len(x2) == 1 and x2[0]["resource"]["gender"] == "other"
    # the same conditional update again updates the one match
    b = txn({"resource": patient("X2", gender="male"), "request": cond_put})
    r = await client.post("", json=b)
    assert r.json()["entry"][0]["response"]["status"].startswith("200")
    assert r.json()["entry"][0]["response"]["etag"] == 'W/"2"'


async def test_batch_entries_are_independent(client):
    await client.put("Patient/bp", json={**patient("Y1"), "id": "bp"})
    b = txn(
        {"resource": patient("Y2"), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/nothing"}},
        {"resource": {**patient("Y1"), "id": "bp"}, "request": {"method": "PUT", "url": "Patient/bp",
                                                                "ifMatch": 'W/"3"'}},
        {"request": {"method": "GET", "url": "Patient?identifier=urn:mrn|Y1"}},
        {"resource": {"resourceType": "Patient", "gender": 3}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": "Patient/bp"}},
        kind="batch",
    )
    r = await client.post("", json=b)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "batch-response"
    st = [e["response"]["status"].split()[0] for e in out["entry"]]
    assert st[0] == "201" and st[1] == "404" and st[2] == "412" and st[3] == "200" and st[4] == "400"
    assert st[5] in ("200", "204")
    assert out["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert out["entry"][3]["resource"]["type"] == "searchset"
    assert await count(client, "Patient?identifier=urn:mrn|Y2") == 1


async def test_bundle_errors(client):
    outcome(await client.post("", json={"resourceType": "Bundle", "type": "collection"}), 400)
    outcome(await client.post("", json={"resourceType": "Patient"}), 400)
    outcome(await client.post("", json=txn({"resource": patient("Z")})), 400)  # no request
    outcome(await client.post("", json=txn({"request": {"method": "TRACE", "url": "Patient"}})), 400)
    unknown = txn({"resource": patient("Z"), "request": {"method": "POST", "url": "Nope"}})
    outcome(await client.post("", json=unknown), 404)


async def test_history_levels_since_and_count(client):
    await client.put("Patient/h1", json={**patient("H1"), "id": "h1"})
    await client.put("Patient/h1", json={**patient("H1"), "id": "h1", "gender": "male"})
    mid = (await client.get("Patient/h1")).json()["meta"]["lastUpdated"]
    await asyncio.sleep(0.002)
    await client.post("Observation", json=observation("Patient/h1"))
    await client.delete("Patient/h1")
    h = (await client.get("Patient/h1/_history")).json()
    assert h["type"] == "history" and h["total"] == 3
    assert [e["response"]["etag"] for e in h["entry"]] == ['W/"3"', 'W/"2"', 'W/"1"']
    t = (await client.get("Patient/_history")).json()
    assert t["total"] == 3 and all(e["fullUrl"].endswith("/Patient/h1") for e in t["entry"])
    s = (await client.get("_history")).json()
    assert s["total"] == 4
    since = (await client.get("_history", params={"_since": mid})).json()
    assert since["total"] == 3  # the second PUT (at mid), the observation and the delete
    assert {e["request"]["method"] for e in since["entry"]} == {"PUT", "POST", "DELETE"}
    page = (await client.get("_history", params={"_count": 2})).json()
    assert len(page["entry"]) == 2
    nxt = next(x["url"] for x in page["link"] if x["relation"] == "next")
    await client.post("Observation", json=observation("Patient/h1"))  # written while paging
    page2 = (await client.get(nxt.split("/fhir/")[1])).json()
    assert len(page2["entry"]) == 2 and page2["total"] == 4
    urls = [e["fullUrl"] + e["response"]["etag"] for e in page["entry"] + page2["entry"]]
    assert len(set(urls)) == 4
    outcome(await client.get("_history", params={"_since": "last tuesday"}), 400)
    outcome(await client.get("_history", params={"_count": "-3"}), 400)
    outcome(await client.get("Patient/unknown/_history"), 404)
    assert (await client.get("_history", params={"bogus": "1"})).status_code == 200
    outcome(await client.get("Patient/_history", params={"bogus": "1"}, headers={"prefer": "handling=strict"}), 400)
