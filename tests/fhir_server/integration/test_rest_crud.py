"""REST create/read/vread/update/delete/patch/history against the real app and store."""

from __future__ import annotations

import orjson
import pytest

PATIENT = {"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Peter"]}], "gender": "male"}
OBS = (b'{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org",'
       b'"code":"8310-5"}]},"valueQuantity":{"value":37.50,"unit":"Cel","system":"http://unitsofmeasure.org",'
       b'"code":"Cel"}}')


def oo_code(resp) -> str:
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert resp.headers["content-type"].startswith("application/fhir+json")
    return body["issue"][0]["code"]


async def test_create_returns_location_etag_and_body(client):
    r = await client.post("Patient", json=PATIENT)
    assert r.status_code == 201
    body = r.json()
    pid = body["id"]
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{pid}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert "GMT" in r.headers["last-modified"]
    assert body["meta"]["versionId"] == "1" and body["name"][0]["family"] == "Chalmers"


async def test_create_ignores_client_id_and_keeps_decimal_text(client):
    r = await client.post("Observation", content=OBS)
    assert r.status_code == 201
    assert b'"value":37.50' in r.content
    read = await client.get(f"Observation/{r.json()['id']}")
    assert b'"value":37.50' in read.content


async def test_prefer_return(client):
    r = await client.post("Patient", json=PATIENT, headers={"prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b"" and r.headers["location"]
    r = await client.post("Patient", json=PATIENT, headers={"prefer": "return=OperationOutcome"})
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_update_if_match_delete_gone_vread_history(client):
    r = await client.put("Patient/abc", json={**PATIENT, "id": "abc"})
    assert r.status_code == 201  # update-as-create with a client id
    r = await client.put("Patient/abc", json={**PATIENT, "id": "abc", "gender": "female"},
                         headers={"if-match": 'W/"1"'})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
    r = await client.put("Patient/abc", json={**PATIENT, "id": "abc"}, headers={"if-match": 'W/"1"'})
    assert r.status_code == 412 and oo_code(r) == "conflict"
    r = await client.delete("Patient/abc")
    assert r.status_code == 200
    r = await client.get("Patient/abc")
    assert r.status_code == 410 and oo_code(r) == "deleted"
    r = await client.get("Patient/abc/_history/1")
    assert r.status_code == 200 and r.json()["gender"] == "male"
    r = await client.get("Patient/abc/_history")
    h = r.json()
    assert h["type"] == "history" and h["total"] == 3
    assert [e["request"]["method"] for e in h["entry"]] == ["DELETE", "PUT", "POST"]
    assert "resource" not in h["entry"][0]


async def test_update_id_mismatch_and_invalid_resources(client):
    r = await client.put("Patient/abc", json={**PATIENT, "id": "other"})
    assert r.status_code == 400 and oo_code(r) == "invalid"
    r = await client.post("Patient", json={"resourceType": "Patient", "gender": 12})
    assert r.status_code == 400
    assert "Patient.gender" in r.json()["issue"][0]["expression"][0]
    r = await client.post("Patient", json={"resourceType": "Observation", "status": "final", "code": {}})
    assert r.status_code == 400
    r = await client.post("Patient", content=b"{not json")
    assert r.status_code == 400 and oo_code(r) == "structure"
    r = await client.post("Patient", json={"resourceType": "Patient", "unknownElement": 1})
    assert r.status_code == 400


@pytest.mark.parametrize(("resource", "where"), [
    ({"name": []}, "Patient.name"),
    ({"name": [{}]}, "Patient.name[0]"),
    ({"meta": {}}, "Patient.meta"),
    ({"gender": None}, "Patient.gender"),
    ({"name": [{"family": "F", "given": []}]}, "Patient.name[0].given"),
    ({"contained": [{"resourceType": "Organization", "alias": []}]}, "Patient.contained[0].alias"),
])
async def test_empty_or_null_members_are_refused(client, resource, where):
    """fhir.resources accepts them; FHIR JSON does not, and the JSON is stored as received."""
    ok = await client.post("Patient", json={"resourceType": "Patient", "name": [{"family": "F", "given": ["A"]}]})
    assert ok.status_code == 201  # a shape of the same members, validated and remembered first
    r = await client.post("Patient", json={"resourceType": "Patient", **resource})
    assert r.status_code == 400 and oo_code(r) == "invalid"
    assert r.json()["issue"][0]["expression"] == [where]
    r = await client.put("Patient/empty", json={"resourceType": "Patient", "id": "empty", **resource})
    assert r.status_code == 400
    assert (await client.get("Patient/empty")).status_code == 404
    total = (await client.get("Patient", params={"_summary": "count"})).json()["total"]
    assert total == 1  # only the valid one


async def test_null_placeholders_in_primitive_arrays_are_kept(client):
    patient = {"resourceType": "Patient",
               "name": [{"given": ["A", None], "_given": [None, {"extension": [
                   {"url": "http://example.org/initial", "valueBoolean": True}]}]}]}
    r = await client.post("Patient", json=patient)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == patient["name"]


async def test_unknown_type_and_missing_resource(client):
    r = await client.get("Nonsense/1")
    assert r.status_code == 404 and oo_code(r) == "not-found"
    r = await client.get("Patient/nope")
    assert r.status_code == 404 and oo_code(r) == "not-found"
    r = await client.get("Patient/nope/_history/1")
    assert r.status_code == 404


async def test_json_patch(client):
    pid = (await client.post("Patient", json=PATIENT)).json()["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "female"}]
    r = await client.patch(f"Patient/{pid}", content=orjson.dumps(ops),
                           headers={"content-type": "application/json-patch+json"})
    assert r.status_code == 200 and r.json()["gender"] == "female" and r.headers["etag"] == 'W/"2"'
    bad = [{"op": "replace", "path": "/gender", "value": 5}]
    r = await client.patch(f"Patient/{pid}", content=orjson.dumps(bad),
                           headers={"content-type": "application/json-patch+json"})
    assert r.status_code == 422
    emptied = [{"op": "replace", "path": "/name", "value": []}]  # a patch leaving an empty array
    r = await client.patch(f"Patient/{pid}", content=orjson.dumps(emptied),
                           headers={"content-type": "application/json-patch+json"})
    assert r.status_code == 422 and r.json()["issue"][0]["expression"] == ["Patient.name"]
    assert (await client.get(f"Patient/{pid}")).headers["etag"] == 'W/"2"'
    r = await client.patch(f"Patient/{pid}", content=orjson.dumps(ops),
                           headers={"content-type": "application/fhir+json"})
    assert r.status_code == 415


async def test_metadata_lists_types_and_search_params(client):
    r = await client.get("metadata")
    cs = r.json()
    assert cs["fhirVersion"] == "4.3.0"
    res = {x["type"]: x for x in cs["rest"][0]["resource"]}
    obs = res["Observation"]
    names = {p["name"] for p in obs["searchParam"]}
    assert {"patient", "code", "date", "value-quantity", "_id", "_lastUpdated"} <= names
    assert obs["operation"][0]["name"] == "lastn"
    assert "Observation:patient" in obs["searchInclude"]
    assert _empty_values(cs) == []  # FHIR JSON: no empty arrays, objects or strings


def _empty_values(node, path: str = "$") -> list[str]:
    found = []
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = [(f"[{i}]", v) for i, v in enumerate(node)]
    else:
        return found
    for key, value in items:
        where = f"{path}.{key}" if isinstance(node, dict) else path + key
        if value in ([], {}, ""):
            found.append(where)
        found += _empty_values(value, where)
    return found


async def test_format_and_content_negotiation(client):
    r = await client.get("metadata", params={"_format": "xml"})
    assert r.status_code == 406
    r = await client.post("Patient", content=b"<Patient/>", headers={"content-type": "application/fhir+xml"})
    assert r.status_code == 415
    r = await client.request("PURGE", "Patient")
    assert r.status_code == 405 and oo_code(r) == "not-supported"
