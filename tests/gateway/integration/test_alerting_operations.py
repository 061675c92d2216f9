"""$acknowledge, $resolve and $mark-false through the real FHIR app, with the consumer running."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.api import create_app
from fhir_server.core import Extensions
from gateway.alerting import AlertingConsumer, register_operations
from inference import Engine, builtin_ruleset

from .test_alerting import detected_issues, put_all, spo2, until

BASE = "http://testserver/fhir"


def params(**values) -> dict:
    out = []
    for name, value in values.items():
        key = "valueReference" if isinstance(value, dict) else "valueString"
        out.append({"name": name, key: value})
    return {"resourceType": "Parameters", "parameter": out}


@pytest.fixture
async def running(store):
    ext = Extensions()
    register_operations(ext)
    consumer = AlertingConsumer(store, Engine(builtin_ruleset("icu-limits")), cursor_every_s=0.0)
    await consumer.start()
    app = create_app(store, BASE, extensions=ext)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE + "/",
                                 headers={"content-type": "application/fhir+json"}) as client:
        yield client, consumer
    await consumer.stop()


async def _versions(store, id_: str) -> int:
    current = await store.read("DetectedIssue", id_)
    return current.version


async def _processed(store, consumer) -> bool:
    return consumer.stats.caught_up >= await store.last_seq()


async def test_acknowledge_resolve_and_a_new_episode_later(running, store):
    client, consumer = running
    await put_all(store, [spo2(s, 88) for s in range(0, 20)])
    [issue] = await until(lambda: detected_issues(store))
    url = f"DetectedIssue/{issue['id']}"

    r = await client.post(f"{url}/$acknowledge", json=params(who={"reference": "Practitioner/n1"}, note="at bedside"))
    assert r.status_code == 200, r.text
    acked = r.json()
    assert acked["status"] == "preliminary" and r.headers["etag"] == f'W/"{acked["meta"]["versionId"]}"'
    [mitigation] = acked["mitigation"]
    assert mitigation["author"] == {"reference": "Practitioner/n1"}
    assert mitigation["action"]["coding"][0]["code"] == "acknowledged" and mitigation["action"]["text"] == "at bedside"

    # deeper desaturation escalates the same alert; the acknowledgement is kept
    await put_all(store, [spo2(s, 82) for s in range(20, 25)])
    escalated = await until(lambda: _severity(store, issue["id"], "high"))
    assert escalated["mitigation"][0]["author"] == {"reference": "Practitioner/n1"}

    r = await client.post(f"{url}/$resolve", json=params(who="RN on duty"))
    assert r.status_code == 200, r.text
    resolved = r.json()
    assert resolved["status"] == "final" and "end" in resolved["identifiedPeriod"]
    assert resolved["mitigation"][-1]["author"] == {"display": "RN on duty"}
    version = await _versions(store, issue["id"])

    # still desaturated: the resolved alert is not reopened or updated, and no new one floods in
    await put_all(store, [spo2(s, 82) for s in range(25, 60)])
    await until(lambda: _processed(store, consumer))
    assert await _versions(store, issue["id"]) == version
    assert len(await detected_issues(store)) == 1

    # the condition clears, then comes back: a new episode
    await put_all(store, [spo2(s, 97) for s in range(60, 70)] + [spo2(s, 88) for s in range(70, 90)])
    issues = await until(lambda: _at_least(store, 2))
    [new] = [i for i in issues if i["id"] != issue["id"]]
    assert new["status"] == "preliminary" and "mitigation" not in new


async def _severity(store, id_: str, severity: str) -> dict | None:
    return next((i for i in await detected_issues(store) if i["id"] == id_ and i["severity"] == severity), None)


async def _at_least(store, n: int) -> list[dict] | None:
    issues = await detected_issues(store)
    return issues if len(issues) >= n else None


async def test_mark_false_after_resolution_and_refusals(running, store):
    client, consumer = running
    await put_all(store, [spo2(s, 88) for s in range(0, 20)])
    [issue] = await until(lambda: detected_issues(store))
    url = f"DetectedIssue/{issue['id']}"

    r = await client.post(f"{url}/$acknowledge", json=params(note="no who"))
    assert r.status_code == 400 and "who" in r.text
    r = await client.post(f"{url}/$acknowledge", json=params(who={"reference": "Patient/p1"}))
    assert r.status_code == 400
    assert (await client.get(f"{url}/$acknowledge")).status_code == 405
    assert (await client.post("DetectedIssue/nope/$resolve", json=params(who="x"))).status_code == 404
    when = {"resourceType": "Parameters", "parameter": [{"name": "who", "valueString": "Practitioner/n2"},
                                                        {"name": "when", "valueDateTime": "2026-11-28T09:30:00"}]}
    assert (await client.post(f"{url}/$resolve", json=when)).status_code == 400  # no time zone

    assert (await client.post(f"{url}/$resolve", json=params(who="Practitioner/n2"))).status_code == 200
    assert (await client.post(f"{url}/$acknowledge", json=params(who="Practitioner/n2"))).status_code == 409
    r = await client.post(f"{url}/$mark-false", json=params(who="Practitioner/n2", note="probe off finger"))
    assert r.status_code == 200 and r.json()["status"] == "entered-in-error"
    assert [m["action"]["coding"][0]["code"] for m in r.json()["mitigation"]] == ["resolved", "false-alarm"]
    assert (await client.post(f"{url}/$mark-false", json=params(who="Practitioner/n2"))).status_code == 409
    await until(lambda: _processed(store, consumer))
    assert consumer.engine.alerts == {}  # the engine learnt of it from the change log

    foreign = await client.post("DetectedIssue", json={"resourceType": "DetectedIssue", "status": "preliminary"})
    r = await client.post(f"DetectedIssue/{foreign.json()['id']}/$acknowledge", json=params(who="Practitioner/n2"))
    assert r.status_code == 422

    cap = (await client.get("metadata")).json()
    di = next(x for x in cap["rest"][0]["resource"] if x["type"] == "DetectedIssue")
    assert {o["name"] for o in di["operation"]} >= {"acknowledge", "resolve", "mark-false"}


async def test_alert_rewritten_over_rest_does_not_block_the_engine(running, store):
    client, consumer = running
    await put_all(store, [spo2(s, 88) for s in range(0, 20)])
    [issue] = await until(lambda: detected_issues(store))
    mangled = {k: v for k, v in issue.items() if k not in ("severity", "meta")}
    assert (await client.put(f"DetectedIssue/{issue['id']}", json=mangled)).status_code == 200
    await put_all(store, [spo2(s, 80) for s in range(20, 30)] + [spo2(s, 88, "p9") for s in range(0, 20)])
    issues = await until(lambda: _at_least(store, 2))  # alerting goes on for everyone else
    assert consumer.stats.errors == 0 and {i["patient"]["reference"] for i in issues} >= {"Patient/p9"}
