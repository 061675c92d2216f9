from __future__ import annotations

from fhir_server.subscriptions.receiver import event_numbers

from .helpers import observation, status_of, subscription


async def test_rest_hook_handshake_then_event(node, receiver):
    r = await node.client.post("Subscription", json=subscription(filters=("Observation?patient=Patient/p1",),
                                                                  endpoint=receiver.url))
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "requested"
    await receiver.wait_for(lambda rs: len(rs) >= 1)
    assert status_of(receiver.received[0].json())["type"] == "handshake"
    await node.client.post("Observation", json=observation("p2"))
    await node.client.post("Observation", json=observation("p1"))
    await receiver.wait_for(lambda rs: len(receiver.notifications()) >= 1)
    b = receiver.notifications()[0]
    assert event_numbers([b]) == [1]
    assert b["entry"][1]["resource"]["subject"]["reference"] == "Patient/p1"
