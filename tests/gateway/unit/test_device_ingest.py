"""DeviceIngest: unchanged ventilator settings, alarm state and Device are not re-stored every poll."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.devices import service
from gateway.devices.service import DeviceIngest
from mappers.pb840 import decode_response, vent_record_to_fhir
from mappers.profiles import load_profile

SAMPLE = Path("/work/shared/samples/pb840/mdpnp-pb840cpp_pb840_MISCF_sample.bin")
PROFILE = load_profile("medtronic-pb840")


def _resources(at: datetime, raw: bytes | None = None) -> list[dict]:
    record = decode_response(raw or SAMPLE.read_bytes(), PROFILE, received_at=at)
    return vent_record_to_fhir(record, PROFILE, "Patient/p1")


def _kinds(resources: list[dict]) -> list[str]:
    return [r["resourceType"] if r["resourceType"] == "Device" else r["category"][0]["coding"][0]["code"]
            for r in resources]


def test_unchanged_slow_values_are_dropped_until_refresh(monkeypatch) -> None:
    ingest = DeviceIngest(store=None)  # type: ignore[arg-type]  - _changed_only does no I/O
    t0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
    first = ingest._changed_only(_resources(t0))
    assert {"Device", "device-setting", "vital-signs"} <= set(_kinds(first))
    second = ingest._changed_only(_resources(t0 + timedelta(seconds=2)))
    kinds = set(_kinds(second))
    assert "Device" not in kinds and "device-setting" not in kinds and "device-alarm-limit" not in kinds
    assert "vital-signs" in kinds  # measured values are stored every poll
    assert len(second) < len(first) / 2
    monkeypatch.setattr(service, "SETTINGS_REFRESH_S", 0.0)
    third = ingest._changed_only(_resources(t0 + timedelta(seconds=4)))
    assert "device-setting" in set(_kinds(third))  # refreshed periodically


def test_a_changed_setting_is_stored_at_once() -> None:
    ingest = DeviceIngest(store=None)  # type: ignore[arg-type]
    t0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
    before = _resources(t0)
    ingest._changed_only(before)
    after = _resources(t0 + timedelta(seconds=2))
    setting = next(r for r in after if r["resourceType"] == "Observation" and "valueQuantity" in r
                   and r["category"][0]["coding"][0]["code"] == "device-setting")
    setting["valueQuantity"] = {**setting["valueQuantity"], "value": setting["valueQuantity"]["value"] + 1}
    kept = ingest._changed_only(after)
    assert [r["id"] for r in kept if r["resourceType"] == "Observation"
            and r["category"][0]["coding"][0]["code"] == "device-setting"] == [setting["id"]]


def test_ventilator_clock_drift_is_reported_on_change_only() -> None:
    ingest = DeviceIngest(store=None, site_tz="UTC")  # type: ignore[arg-type]
    from gateway.devices.associations import Association

    raw = SAMPLE.read_bytes()
    record = decode_response(raw, PROFILE, received_at=datetime(2026, 3, 1, 8, tzinfo=UTC))
    vent_at = f"{record.vent_date} {record.vent_time}"
    assert record.vent_time and record.vent_date, vent_at
    from mappers.pb840 import vent_clock

    clock = vent_clock(record, UTC)
    assert clock is not None
    none = Association(None, False)
    in_step = decode_response(raw, PROFILE, received_at=clock + timedelta(seconds=30))
    assert ingest._vent_clock(in_step, "v1", 180.0, none) == []  # within the limit: nothing
    late = decode_response(raw, PROFILE, received_at=clock + timedelta(minutes=10))
    (obs,) = ingest._vent_clock(late, "v1", 180.0, none)
    assert obs["valueQuantity"]["value"] == -600.0
    assert obs["component"][0]["valueCodeableConcept"]["coding"][0]["code"] == "clock-drift"
    assert ingest._vent_clock(late, "v1", 180.0, none) == []  # reported once
    (back,) = ingest._vent_clock(in_step, "v1", 180.0, none)
    assert back["component"][0]["valueCodeableConcept"]["coding"][0]["code"] == "clock-ok"
