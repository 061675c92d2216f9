"""Subscriptions through the REST API: validation, handshake, matching per topic, $status, $events."""

from __future__ import annotations

import asyncio

import pytest

from fhir_server.subscriptions.receiver import event_numbers
from fhir_server.subscriptions.topics import TOPIC_BASE

from .helpers import OBS_TOPIC, caught_up, observation, status_of, subscription


async def _active(node, receiver, sub) -> str:
    r = await node.client.post("Subscription", json=sub)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    async with asyncio.timeout(10):
        while (await node.client.get(f"Subscription/{sid}")).json()["status"] != "active":
            await asyncio.sleep(0.02)
    assert any(status_of(x.json())["type"] == "handshake" and
               status_of(x.json())["subscription"]["reference"].endswith(sid) for x in receiver.received)
    return sid


@pytest.mark.parametrize(("change", "why"), [
    ({"criteria": "http://example.org/no-such-topic"}, "unknown SubscriptionTopic"),
    ({"_criteria": {"extension": [{"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                                         "backport-filter-criteria", "valueString": "Observation?status=final"}]}},
     "not allowed"),
    ({"_criteria": {"extension": [{"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                                         "backport-filter-criteria", "valueString": "Patient?name=x"}]}},
     "not allowed"),
    ({"_criteria": {"extension": [{"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                                         "backport-filter-criteria", "valueString": "Observation?code:above=x"}]}},
     "not allowed"),
    ({"channel": {"type": "rest-hook", "endpoint": "ftp://example.org/x"}}, "http(s) endpoint"),
    ({"channel": {"type": "rest-hook"}}, "http(s) endpoint"),
    ({"channel": {"type": "email", "endpoint": "mailto:a@b.c"}}, "channel.type"),
    ({"channel": {"type": "rest-hook", "endpoint": "http://x/", "payload": "application/fhir+xml"}}, "payload"),
    ({"channel": {"type": "rest-hook", "endpoint": "http://x/", "header": ["no colon"]}}, "header"),
])
async def test_invalid_subscriptions_are_refused_with_the_reason(node, change, why):
    sub = {**subscription(endpoint="http://127.0.0.1:9/hook"), **change}
    r = await node.client.post("Subscription", json=sub)
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert why in issue["diagnostics"] and issue["expression"]
    assert (await node.client.get("Subscription")).json().get("total", 0) == 0


async def test_create_is_requested_then_handshake_activates(node, receiver):
    sub = subscription(endpoint=receiver.url, headers=("Authorization: Bearer s3cret",))
    sub["status"] = "active"
    r = await node.client.post("Subscription", json=sub)
    assert r.json()["status"] == "requested"
    sid = r.json()["id"]
    await receiver.wait_for(lambda rs: len(rs) >= 1)
    hs = receiver.received[0]
    assert hs.headers["authorization"] == "Bearer s3cret"
    assert hs.headers["content-type"] == "application/fhir+json"
    st = status_of(hs.json())
    assert (st["type"], st["status"], st["eventsSinceSubscriptionStart"]) == ("handshake", "requested", "0")
    assert st["subscription"]["reference"].endswith(f"Subscription/{sid}") and st["topic"] == OBS_TOPIC
    async with asyncio.timeout(10):
        while (await node.client.get(f"Subscription/{sid}")).json()["status"] != "active":
            await asyncio.sleep(0.02)


async def test_observation_filters_numbering_and_payloads(node, receiver):
    full = await _active(node, receiver, subscription(
        filters=("Observation?patient=Patient/p1", "Observation?code=http://loinc.org|8867-4"), endpoint=receiver.url))
    await _active(node, receiver, subscription(filters=("Observation?category=laboratory",), endpoint=receiver.url,
                                               content="id-only"))
    for obs in (observation("p2"), observation("p1", code="59408-5"), observation("p1", value=81),
                observation("p1", category="laboratory", code="x"), observation("p1", value=82)):
        assert (await node.client.post("Observation", json=obs)).status_code == 201
    await receiver.wait_for(lambda rs: len(receiver.notifications()) >= 3)
    mine = [b for b in receiver.notifications() if status_of(b)["subscription"]["reference"].endswith(full)]
    assert event_numbers(mine) == [1, 2]
    values = [e["resource"]["valueQuantity"]["value"] for b in mine for e in b["entry"][1:]]
    assert values == [81, 82]
    assert [e["request"]["method"] for b in mine for e in b["entry"]] == ["GET", "POST", "GET", "POST"]
    lab = [b for b in receiver.notifications() if b not in mine]
    assert event_numbers(lab) == [1]
    assert "resource" not in lab[0]["entry"][1] and lab[0]["entry"][1]["fullUrl"].startswith("http://testserver/fhir")
    assert status_of(lab[0])["notificationEvent"][0]["focus"]["reference"] == lab[0]["entry"][1]["fullUrl"]


async def test_status_and_events_replay(node, receiver):
    sid = await _active(node, receiver, subscription(filters=("Observation?patient=Patient/p1",),
                                                     endpoint=receiver.url, max_count=2))
    for v in range(5):
        await node.client.post("Observation", json=observation("p1", value=v))
    await receiver.wait_for(lambda rs: event_numbers(receiver.notifications())[-1:] == [5])
    assert event_numbers(receiver.notifications()) == [1, 2, 3, 4, 5]
    assert max(len(status_of(b)["notificationEvent"]) for b in receiver.notifications()) <= 2

    for path in (f"Subscription/{sid}/$status", f"Subscription/$status?id={sid}"):
        r = await node.client.get(path)
        assert r.status_code == 200, r.text
        st = r.json()["entry"][0]["resource"]
        assert (st["type"], st["status"], st["eventsSinceSubscriptionStart"]) == ("query-status", "active", "5")

    r = await node.client.get(f"Subscription/{sid}/$events", params={"eventsSinceNumber": 2, "eventsUntilNumber": 4})
    b = r.json()
    assert b["type"] == "history" and status_of(b)["type"] == "query-event"
    assert event_numbers([b]) == [2, 3, 4]
    assert [e["resource"]["valueQuantity"]["value"] for e in b["entry"][1:]] == [1, 2, 3]
    b = (await node.client.post(f"Subscription/{sid}/$events", json={"resourceType": "Parameters", "parameter": [
        {"name": "eventsSinceNumber", "valueInteger64": "5"}, {"name": "content", "valueCode": "id-only"}]})).json()
    assert event_numbers([b]) == [5] and "resource" not in b["entry"][1]
    assert (await node.client.get(f"Subscription/{sid}/$events?eventsSinceNumber=x")).status_code == 400
    assert (await node.client.get("Subscription/nope/$status")).status_code == 404


async def test_detected_issue_severity_and_encounter_topics(node, receiver):
    await _active(node, receiver, subscription(TOPIC_BASE + "detected-issue", (
        "DetectedIssue?patient=Patient/p1", "DetectedIssue?severity=high"), endpoint=receiver.url))
    for topic in ("encounter-admit", "encounter-transfer", "encounter-discharge"):
        await _active(node, receiver, subscription(TOPIC_BASE + topic, ("Encounter?patient=Patient/p1",),
                                                   endpoint=receiver.url, content="id-only"))
    issue = {"resourceType": "DetectedIssue", "status": "preliminary", "patient": {"reference": "Patient/p1"}}
    await node.client.post("DetectedIssue", json=issue | {"severity": "low"})
    high = (await node.client.post("DetectedIssue", json=issue | {"severity": "high"})).json()["id"]
    enc = {"resourceType": "Encounter", "status": "planned", "class": {"code": "IMP"},
           "subject": {"reference": "Patient/p1"}, "location": [{"location": {"reference": "Location/bed1"}}]}
    eid = (await node.client.post("Encounter", json=enc)).json()["id"]
    steps = [{"status": "in-progress"}, {"status": "in-progress", "period": {"start": "2026-11-28"}},
             {"status": "in-progress", "location": [{"location": {"reference": "Location/bed2"}}]},
             {"status": "finished"}]
    for change in steps:
        r = await node.client.put(f"Encounter/{eid}", json=enc | change | {"id": eid})
        assert r.status_code == 200, r.text
    await receiver.wait_for(lambda rs: len(receiver.notifications()) >= 4)
    by_topic = {}
    for b in receiver.notifications():
        by_topic.setdefault(status_of(b)["topic"].rsplit("/", 1)[1], []).append(b)
    assert [b["entry"][1]["fullUrl"].rsplit("/", 1)[1] for b in by_topic["detected-issue"]] == [high]
    versions = {t: [b["entry"][1]["response"]["etag"] for b in bs]
                for t, bs in by_topic.items() if t != "detected-issue"}
    assert versions == {"encounter-admit": ['W/"2"'], "encounter-transfer": ['W/"4"'],
                        "encounter-discharge": ['W/"5"']}


async def test_user_defined_topic_with_query_criteria(node, receiver):
    topic = {"resourceType": "SubscriptionTopic", "url": "http://example.org/topics/tachycardia", "status": "active",
             "resourceTrigger": [{"resource": "Observation", "supportedInteraction": ["create"],
                                  "queryCriteria": {"current": "Observation?code=8867-4&value-quantity=gt120"}}],
             "canFilterBy": [{"resource": "Observation", "filterParameter": "patient"}]}
    assert (await node.client.post("SubscriptionTopic", json=topic)).status_code == 201
    await _active(node, receiver, subscription(topic["url"], ("Observation?patient=p1",), endpoint=receiver.url))
    for v in (100, 130):
        await node.client.post("Observation", json=observation("p1", value=v))
    await node.client.post("Observation", json=observation("p2", value=140))
    await receiver.wait_for(lambda rs: len(receiver.notifications()) >= 1)
    assert [e["resource"]["valueQuantity"]["value"] for e in receiver.notifications()[0]["entry"][1:]] == [130]
    bad = topic | {"url": "http://example.org/topics/bad", "canFilterBy": [{"filterParameter": "nope"}]}
    assert (await node.client.post("SubscriptionTopic", json=bad)).status_code == 201  # stored, but unusable
    r = await node.client.post("Subscription", json=subscription(bad["url"], endpoint=receiver.url))
    assert r.status_code == 422 and "unknown SubscriptionTopic" in r.text


async def test_update_keeps_server_state_and_off_stops(node, receiver):
    sid = await _active(node, receiver, subscription(endpoint=receiver.url))
    cur = (await node.client.get(f"Subscription/{sid}")).json()
    r = await node.client.put(f"Subscription/{sid}", json=cur | {"reason": "edited"})
    assert r.json()["status"] == "active"
    r = await node.client.put(f"Subscription/{sid}", json=r.json() | {"status": "off"})
    assert r.json()["status"] == "off"
    await node.client.post("Observation", json=observation())
    await caught_up(node)
    st = (await node.client.get(f"Subscription/{sid}/$status")).json()["entry"][0]["resource"]
    assert (st["status"], st["eventsSinceSubscriptionStart"]) == ("off", "0")
    assert receiver.notifications() == []


async def test_operations_are_in_the_capability_statement(node):
    cap = (await node.client.get("metadata")).json()
    sub = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Subscription")
    assert {"status", "events", "get-ws-binding-token"} <= {o["name"] for o in sub["operation"]}
