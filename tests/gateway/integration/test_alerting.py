"""The alerting consumer on a real store: change log in, DetectedIssue out, cursor committed with it."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from fhir_server.storage import loads
from gateway.alerting import CONSUMER, AlertingConsumer, is_engine_input
from inference import Engine, Mitigation, alert_from_detected_issue, builtin_ruleset
from inference.fhir import detected_issue

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
MDC = "urn:iso:std:iso:11073:10101"
VITAL = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}


def spo2(second: int, value: float, patient: str = "p1") -> dict:
    return {
        "resourceType": "Observation", "id": f"{patient}-spo2-{second}", "status": "final", "category": [VITAL],
        "code": {"coding": [{"system": MDC, "code": "150456"}]},
        "subject": {"reference": f"Patient/{patient}"}, "device": {"reference": "Device/mon-1"},
        "effectiveDateTime": (T0 + timedelta(seconds=second)).isoformat(),
        "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    }


async def put_all(store, observations) -> None:
    async def job(tx):
        for o in observations:
            tx.put("Observation", o["id"], o)

    await store.write(job)


async def detected_issues(store) -> list[dict]:
    versions, _ = await store.history("DetectedIssue", count=1000)
    latest: dict[str, dict] = {}
    for v in reversed(versions):  # oldest first: the last one seen is current
        latest[v.id] = loads(v.body)
    return list(latest.values())


async def until(predicate, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def consumer_for(store) -> AlertingConsumer:
    return AlertingConsumer(store, Engine(builtin_ruleset("icu-limits")), cursor_every_s=0.0)


async def test_desaturation_raises_one_alert_committed_with_the_cursor(store):
    consumer = consumer_for(store)
    await consumer.start()
    try:
        await put_all(store, [spo2(s, 88) for s in range(0, 20)])
        [issue] = await until(lambda: detected_issues(store))
        assert issue["status"] == "preliminary" and issue["severity"] == "moderate"
        assert issue["patient"] == {"reference": "Patient/p1"}
        assert issue["author"] == {"reference": "Device/rules-icu-limits-1.2.0"}
        assert {"reference": "Observation/p1-spo2-15"} in issue["evidence"][0]["detail"]
        assert await store.cursor(CONSUMER) >= 1
    finally:
        await consumer.stop()


async def test_alerts_raised_while_a_commit_is_in_flight_all_commit_with_the_cursor(store):
    """Deep desaturations (fire at once) of 30 patients, each in its own ingest commit: the
    consumer does not wait for one alert's commit before evaluating the next, and every alert and
    the final cursor still commit, once each."""
    consumer = consumer_for(store)
    await consumer.start()
    try:
        for n in range(30):
            await put_all(store, [spo2(0, 80, patient=f"p{n}")])
        issues = await until(lambda: _at_least(store, 30))
        assert sorted(i["patient"]["reference"] for i in issues) == sorted(f"Patient/p{n}" for n in range(30))
        assert all(i["severity"] == "high" for i in issues)
    finally:
        await consumer.stop()
    assert consumer.stats.alerts_written == 30
    assert await store.cursor(CONSUMER) == store.notifier.seq


async def _at_least(store, count: int) -> list[dict]:
    issues = await detected_issues(store)
    return issues if len(issues) >= count else []


async def test_restart_continues_the_episode_without_duplicates(store):
    first = consumer_for(store)
    await first.start()
    await put_all(store, [spo2(s, 88) for s in range(0, 20)])
    [opened] = await until(lambda: detected_issues(store))
    await first.stop()
    # written while the consumer is down: processed after the restart, from the durable cursor
    await put_all(store, [spo2(s, 96) for s in range(20, 60)])
    second = consumer_for(store)
    await second.start()
    try:
        assert second.stats.warmed["alerts"] == 1 and second.stats.warmed["observations"] >= 20
        resolved = await until(lambda: _with_status(store, "final"))
        assert [r["id"] for r in resolved] == [opened["id"]]
        assert resolved[0]["identifiedPeriod"]["end"] == (T0 + timedelta(seconds=50)).isoformat()
        assert len(await detected_issues(store)) == 1
    finally:
        await second.stop()


async def _with_status(store, status: str) -> list[dict]:
    return [r for r in await detected_issues(store) if r["status"] == status]


async def test_replaying_changes_after_a_lost_commit_writes_the_same_alert(store):
    """Crash after the alert committed but before anything is known of it (cursor reset, nothing
    restored): the replay computes the same episode id, so the alert is updated, not duplicated."""
    await put_all(store, [spo2(s, 88) for s in range(0, 20)])
    head = await store.last_seq()
    for _ in range(2):
        run = AlertingConsumer(store, Engine(builtin_ruleset("icu-limits")), name="probe", restore_days=0)
        await run.start()
        await until(lambda c=run: _reached(c, head))
        await run.stop()
        await store.advance_cursor("probe", 0)
    assert run.stats.alerts_written == 1
    assert len(await detected_issues(store)) == 1


async def test_replay_over_an_acknowledged_alert_keeps_the_acknowledgement(store):
    """A new episode's DetectedIssue is written without reading the stored one first (nothing can be
    stored yet); on a replay after a crash it is there, maybe acted on: the write is skipped and the
    engine's version goes again merged with it. Here the replay also escalates the same episode in
    its batch: the escalation, not the older opening version, must end up stored, acknowledged."""
    await put_all(store, [spo2(s, 88) for s in range(0, 20)])
    first = AlertingConsumer(store, Engine(builtin_ruleset("icu-limits")), name="probe", restore_days=0)
    await first.start()
    [opened] = await until(lambda: detected_issues(store))
    await first.stop()
    acked = replace(alert_from_detected_issue(opened),
                    mitigations=(Mitigation("acknowledged", T0 + timedelta(seconds=30), "Practitioner/n1"),))
    await store.put("DetectedIssue", opened["id"], detected_issue(acked))
    await store.advance_cursor("probe", 0)
    await put_all(store, [spo2(s, 80) for s in range(20, 25)])
    head = await store.last_seq()
    second = AlertingConsumer(store, Engine(builtin_ruleset("icu-limits")), name="probe", restore_days=0)
    await second.start()
    try:
        await until(lambda: _reached(second, head))
    finally:
        await second.stop()
    [issue] = await detected_issues(store)
    assert issue["id"] == opened["id"] and issue["severity"] == "high"
    assert [m["author"] for m in issue["mitigation"]] == [{"reference": "Practitioner/n1"}]


async def _reached(consumer: AlertingConsumer, seq: int) -> bool:
    return consumer.stats.caught_up >= seq


async def test_waveforms_settings_and_own_scores_are_not_engine_input(store):
    wave = {**spo2(1, 70), "id": "w1", "category": [{"coding": [{"system": "urn:vitalgate:observation-category",
                                                                  "code": "waveform"}]}],
            "valueSampledData": {"origin": {"value": 0}, "period": 8, "dimensions": 1, "data": "1 2 3"}}
    wave.pop("valueQuantity")
    setting = {**spo2(2, 70), "id": "s1", "category": [{"coding": [{"system": "urn:vitalgate:observation-category",
                                                                     "code": "device-setting"}]}]}
    acvpu = {**spo2(3, 0), "id": "c1", "category": [{"coding": [{"code": "exam"}]}],
             "code": {"coding": [{"system": "http://loinc.org", "code": "67775-7"}]}}
    assert not is_engine_input(wave) and not is_engine_input(setting)
    assert is_engine_input(acvpu) and is_engine_input(spo2(4, 97))
    consumer = consumer_for(store)
    await consumer.start()
    try:
        await put_all(store, [wave, setting, spo2(5, 97)])
        await until(lambda: _seen(consumer, 3))
        assert consumer.stats.observations == 1
    finally:
        await consumer.stop()


async def _seen(consumer: AlertingConsumer, changes: int) -> bool:
    return consumer.stats.changes >= changes


def vital(oid: str, second: int, code: str, value: float, unit: str, patient: str = "p2") -> dict:
    return {**spo2(second, value, patient), "id": oid, "code": {"coding": [{"system": MDC, "code": code}]},
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


async def test_news2_score_is_written_and_not_read_back_as_input(store):
    """The engine's own NEWS2 Observation goes through the change log too, and is ignored."""
    consumer = AlertingConsumer(store, Engine(builtin_ruleset("news2-ward")), cursor_every_s=0.0)
    await consumer.start()
    try:
        full = [vital("hr", 0, "147842", 80, "/min"), vital("rr", 0, "151562", 25, "/min"),
                vital("sp", 0, "150456", 97, "%"), vital("bp", 0, "150021", 120, "mm[Hg]"),
                vital("t", 0, "150344", 37.0, "Cel"),
                {**vital("o2", 0, "x", 0, "L/min"), "code": {"coding": [{"system": "http://loinc.org",
                                                                         "code": "3151-8"}]}},
                {**vital("c", 0, "x", 0, "1"), "code": {"coding": [{"system": "http://loinc.org", "code": "67775-7"}]},
                 "valueCodeableConcept": {"text": "Alert"}}]
        full[-1].pop("valueQuantity")
        later = vital("rr2", 20, "151562", 25, "/min")  # the rule set's 20 s persistence
        await put_all(store, full)
        await put_all(store, [later])
        [issue] = await until(lambda: detected_issues(store))
        assert issue["code"]["coding"][0]["code"] == "news2" and issue["severity"] == "moderate"
        scores, _ = await until(lambda: _scores(store))
        assert loads(scores[0].body)["valueInteger"] == 3
        await until(lambda: _seen(consumer, len(full) + 3))
        assert consumer.stats.observations == len(full) + 1  # the score came back and was not evaluated
    finally:
        await consumer.stop()


async def _scores(store):
    versions, total = await store.history("Observation", count=1000)
    found = [v for v in versions if b"1104051000000101" in v.body]
    return (found, total) if found else None


async def test_device_disconnect_raises_and_clears_a_technical_alert(store):
    from mappers.device_status import clock_drift_observation
    from mappers.pb840 import connection_state_observation

    consumer = consumer_for(store)
    await consumer.start()
    try:
        down = connection_state_observation("vent-9", "disconnected", T0, "socket closed", "Patient/p3")
        drift = clock_drift_observation(down["device"]["reference"], 42.0, 5.0, T0, "Patient/p3")
        await put_all(store, [down, drift])
        issues = await until(lambda: _at_least(store, 2))
        by_code = {i["code"]["coding"][0]["code"]: i for i in issues}
        assert set(by_code) == {"technical-disconnected", "technical-clock-drift"}
        assert by_code["technical-disconnected"]["implicated"] == [down["device"]]
        assert by_code["technical-disconnected"]["patient"] == {"reference": "Patient/p3"}
        up = connection_state_observation("vent-9", "connected", T0 + timedelta(seconds=30), "back", "Patient/p3")
        await put_all(store, [up])
        [resolved] = await until(lambda: _with_status(store, "final"))
        assert resolved["code"]["coding"][0]["code"] == "technical-disconnected"  # the clock alert stays open
    finally:
        await consumer.stop()


async def _at_least(store, n: int) -> list[dict] | None:
    issues = await detected_issues(store)
    return issues if len(issues) >= n else None
