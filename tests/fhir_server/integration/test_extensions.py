"""Operations and write hooks registered through ``Extensions`` run through the real router."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.api import create_app
from fhir_server.core import Extensions, FhirResponse, Operation
from fhir_server.core.crud import read
from fhir_server.errors import unprocessable
from fhir_server.storage import loads

BASE = "http://testserver/fhir"


def _extensions() -> Extensions:
    ext = Extensions()

    async def echo(call):
        return FhirResponse(200, {"resourceType": "Parameters", "parameter": [
            {"name": k, "valueString": str(v[0])} for k, v in sorted(call.parameters.items())]})

    async def retire(call):
        current = loads((await read(call.db, "Device", call.id)).body)
        call.db.put("Device", call.id, {**current, "status": "inactive"}, method="PUT")
        await call.db.flush()
        return FhirResponse(200, {"resourceType": "OperationOutcome",
                                  "issue": [{"severity": "information", "code": "informational"}]})

    async def devices_need_a_status(tx, req, type_, res):
        if "status" not in res:
            raise unprocessable("a Device needs a status here")
        return {**res, "manufacturer": "stamped by hook"}

    async def broken(call):
        raise RuntimeError("a bug in an extension")

    ext.add_operation(Operation("echo", "system", echo))
    ext.add_operation(Operation("broken", "system", broken))
    ext.add_operation(Operation("retire", "instance", retire, "Device", methods=("POST",), writes=True,
                                definition="http://example.org/OperationDefinition/retire"))
    ext.add_write_hook("Device", devices_need_a_status)
    return ext


@pytest.fixture
async def client(store):
    app = create_app(store, BASE, extensions=_extensions())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE + "/",
                                 headers={"content-type": "application/fhir+json"}) as c:
        yield c


async def test_system_operation_merges_query_and_parameters_body(client):
    body = {"resourceType": "Parameters", "parameter": [{"name": "b", "valueInteger": 2}]}
    r = await client.post("$echo?a=1", json=body)
    assert r.status_code == 200
    assert r.json()["parameter"] == [{"name": "a", "valueString": "1"}, {"name": "b", "valueString": "2"}]


async def test_write_hook_amends_and_rejects(client):
    r = await client.post("Device", json={"resourceType": "Device"})
    assert r.status_code == 422 and "needs a status" in r.text
    r = await client.post("Device", json={"resourceType": "Device", "status": "active"})
    assert r.status_code == 201 and r.json()["manufacturer"] == "stamped by hook"
    did = r.json()["id"]
    patch = [{"op": "remove", "path": "/status"}]
    r = await client.patch(f"Device/{did}", json=patch, headers={"content-type": "application/json-patch+json"})
    assert r.status_code == 422


async def test_instance_write_operation_commits_and_is_listed(client):
    did = (await client.post("Device", json={"resourceType": "Device", "status": "active"})).json()["id"]
    assert (await client.get(f"Device/{did}/$retire")).status_code == 405
    r = await client.post(f"Device/{did}/$retire")
    assert r.status_code == 200
    dev = (await client.get(f"Device/{did}")).json()
    assert dev["status"] == "inactive" and dev["meta"]["versionId"] == "2"
    assert (await client.post("Device/nope/$retire")).status_code == 404
    assert (await client.post("Patient/x/$retire")).status_code == 405
    cap = (await client.get("metadata")).json()
    device = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Device")
    assert {"name": "retire", "definition": "http://example.org/OperationDefinition/retire"} in device["operation"]
    assert [o["name"] for o in cap["rest"][0]["operation"]] == ["broken", "echo"]


async def test_an_unexpected_error_or_method_is_an_operation_outcome_and_the_server_goes_on(client):
    r = await client.get("$broken")
    assert r.status_code == 500 and r.json()["resourceType"] == "OperationOutcome"
    assert "RuntimeError" in r.json()["issue"][0]["diagnostics"] and "a bug" not in r.text
    r = await client.request("OPTIONS", "Patient")
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("$echo?a=1")).status_code == 200
