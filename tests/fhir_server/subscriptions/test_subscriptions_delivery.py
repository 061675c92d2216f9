"""Delivery against real HTTP receivers: outages, restarts, fan-out, isolation of a dead endpoint."""

from __future__ import annotations

import asyncio

from fhir_server.storage import Store, WriteTx, make_engine
from fhir_server.subscriptions.events import last_number
from fhir_server.subscriptions.receiver import Receiver, event_numbers

from .conftest import Node
from .helpers import caught_up, observation, status_of, subscription


async def _wait_status(node, sid: str, want: str, timeout: float = 10.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            res = (await node.client.get(f"Subscription/{sid}")).json()
            if res["status"] == want:
                return res
            await asyncio.sleep(0.02)


def _focus_ids(bundles) -> dict[int, str]:
    out = {}
    for b in bundles:
        for ne in status_of(b).get("notificationEvent", []):
            out[int(ne["eventNumber"])] = ne["focus"]["reference"]
    return out


async def test_endpoint_down_goes_to_error_then_recovers_with_every_event_in_order(node, receiver):
    sid = (await node.client.post("Subscription", json=subscription(endpoint=receiver.url, max_count=1))).json()["id"]
    await _wait_status(node, sid, "active")
    port = receiver.port
    await receiver.stop()
    for v in range(4):
        await node.client.post("Observation", json=observation(value=v))
    res = await _wait_status(node, sid, "error")
    assert "failed deliveries" in res["error"]
    await caught_up(node)
    st = (await node.client.get(f"Subscription/{sid}/$status")).json()["entry"][0]["resource"]
    assert st["status"] == "error" and st["eventsSinceSubscriptionStart"] == "4" and st["error"]

    back = await Receiver(port=port).start()
    try:
        await back.wait_for(lambda rs: event_numbers(back.notifications())[-1:] == [4])
        numbers = event_numbers(back.notifications())
        assert numbers == sorted(numbers) and set(numbers) == {1, 2, 3, 4}
        await _wait_status(node, sid, "active")
    finally:
        await back.stop()


async def test_rejecting_endpoint_is_retried_until_it_accepts(node, receiver):
    receiver.status = 503
    sid = (await node.client.post("Subscription", json=subscription(endpoint=receiver.url))).json()["id"]
    await _wait_status(node, sid, "error")
    await node.client.post("Observation", json=observation())
    receiver.status = 200
    await _wait_status(node, sid, "active")
    await receiver.wait_for(lambda rs: event_numbers(receiver.notifications()) == [1])


async def test_restart_in_the_middle_of_delivery_loses_and_renumbers_nothing(store, db_url, receiver):
    async with Node(store) as a:
        sid = (await a.client.post("Subscription", json=subscription(endpoint=receiver.url, max_count=1))).json()["id"]
        await _wait_status(a, sid, "active")
        delivered = 0

        def accept_two(_at, _body) -> None:
            nonlocal delivered
            delivered += 1
            if delivered >= 3:  # the handshake and two events, then the endpoint fails
                receiver.status = 500

        receiver.on_receive = accept_two
        for v in range(6):
            await a.client.post("Observation", json=observation(value=v, id_=None))
        await caught_up(a)
        await receiver.wait_for(lambda rs: receiver.status == 500 and len(rs) >= 4)
    before = _focus_ids(receiver.notifications())
    await store.close()

    fresh = Store(make_engine(db_url))
    await fresh.start()
    try:
        receiver.on_receive = None
        receiver.status = 200
        async with Node(fresh) as b:
            await receiver.wait_for(lambda rs: 6 in _focus_ids(receiver.notifications()))
            st = (await b.client.get(f"Subscription/{sid}/$status")).json()["entry"][0]["resource"]
            assert st["eventsSinceSubscriptionStart"] == "6"
            await b.client.post("Observation", json=observation(value=99))
            await receiver.wait_for(lambda rs: 7 in _focus_ids(receiver.notifications()))
    finally:
        await fresh.close()
    after = _focus_ids(receiver.notifications())
    assert sorted(after) == [1, 2, 3, 4, 5, 6, 7]
    assert all(after[n] == focus for n, focus in before.items())  # a repeat carries the same number and focus
    assert len(set(after.values())) == 7


async def test_one_event_fans_out_to_a_thousand_subscriptions(node, receiver):
    subs = [subscription(endpoint=receiver.url, content="id-only") | {"id": f"fan-{i}"} for i in range(1000)]

    async def create(tx: WriteTx) -> None:
        for s in subs:
            tx.put("Subscription", s["id"], s, method="PUT")

    await node.store.write(create)
    await receiver.wait_for(lambda rs: len(rs) >= 1000, timeout=60)
    assert {status_of(r.json())["type"] for r in receiver.received} == {"handshake"}
    receiver.received.clear()
    oid = (await node.client.post("Observation", json=observation())).json()["id"]
    await receiver.wait_for(lambda rs: len(rs) >= 1000, timeout=60)
    got = {}
    for r in receiver.received:
        b = r.json()
        got[status_of(b)["subscription"]["reference"].rsplit("/", 1)[1]] = b
    assert len(got) == 1000
    assert all(event_numbers([b]) == [1] and b["entry"][1]["fullUrl"].endswith(f"Observation/{oid}")
               for b in got.values())


async def test_a_burst_of_events_arrives_in_order_with_every_number(node, receiver):
    """Events that come while a send is on its way (the fan-out path) queue behind it in order."""
    sids = [(await node.client.post("Subscription", json=subscription(endpoint=receiver.url, max_count=m))).json()["id"]
            for m in (1, 3)]
    for sid in sids:
        await _wait_status(node, sid, "active")

    async def one(i: int) -> None:
        await node.store.put("Observation", f"burst-{i}", observation(value=i))

    for wave in range(6):  # concurrent writes: several commits while notifications are in flight
        await asyncio.gather(*(one(wave * 10 + i) for i in range(10)))
    for sid in sids:
        def mine(rs, sid=sid):
            return [b for b in receiver.notifications() if b["entry"][0]["resource"]["subscription"]["reference"]
                    .endswith(f"/{sid}")]
        await receiver.wait_for(lambda rs, mine=mine: 60 in event_numbers(mine(rs)), timeout=20)
        numbers = event_numbers(mine(None))
        assert numbers == sorted(numbers) and set(numbers) == set(range(1, 61))


async def test_a_hanging_endpoint_does_not_delay_other_subscriptions(node, receiver):
    hung: list[asyncio.StreamWriter] = []

    async def never_answer(reader, writer):
        hung.append(writer)
        await reader.read()  # read until the client gives up

    black_hole = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{black_hole.sockets[0].getsockname()[1]}/hook"
    try:
        slow = subscription(endpoint=url)
        slow["channel"]["extension"] = [{"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                                                "backport-timeout", "valueUnsignedInt": 30}]
        slow_id = (await node.client.post("Subscription", json=slow)).json()["id"]
        fast_id = (await node.client.post("Subscription", json=subscription(endpoint=receiver.url))).json()["id"]
        await _wait_status(node, fast_id, "active")
        await node.client.post("Observation", json=observation())
        await receiver.wait_for(lambda rs: event_numbers(receiver.notifications()) == [1], timeout=3)
        assert (await node.client.get(f"Subscription/{slow_id}")).json()["status"] == "requested"
        assert hung  # the slow endpoint's handshake is still in flight
    finally:
        black_hole.close()
        for w in hung:
            w.close()


async def test_events_sent_before_their_rows_commit_keep_their_numbers_after_a_crash(store, db_url, receiver):
    """The matcher hands events to delivery before their ``subscription_event`` rows commit:
    a process that dies in between has sent them, stored neither the rows nor the cursor past
    them; the restart numbers the same changes the same way and ``$events`` can replay them."""
    async with Node(store) as a:
        sid = (await a.client.post("Subscription", json=subscription(endpoint=receiver.url, max_count=1))).json()["id"]
        await _wait_status(a, sid, "active")
        await caught_up(a)
        a.svc.matcher._committer.cancel()  # the process dies before any later rows are written
        for v in range(3):
            await a.client.post("Observation", json=observation(value=v, id_=None))
        await receiver.wait_for(lambda rs: 3 in _focus_ids(receiver.notifications()))
    before = _focus_ids(receiver.notifications())
    assert sorted(before) == [1, 2, 3] and await last_number(store, sid) == 0  # sent, none stored
    await store.close()

    fresh = Store(make_engine(db_url))
    await fresh.start()
    try:
        async with Node(fresh) as b:
            await caught_up(b)
            st = (await b.client.get(f"Subscription/{sid}/$status")).json()["entry"][0]["resource"]
            assert st["eventsSinceSubscriptionStart"] == "3"
            replay = (await b.client.get(f"Subscription/{sid}/$events", params={"eventsSinceNumber": 1})).json()
            assert _focus_ids([replay]) == before
            await b.client.post("Observation", json=observation(value=99))
            await receiver.wait_for(lambda rs: 4 in _focus_ids(receiver.notifications()))
    finally:
        await fresh.close()
    after = _focus_ids(receiver.notifications())
    assert sorted(after) == [1, 2, 3, 4]
    assert all(after[n] == focus for n, focus in before.items())
