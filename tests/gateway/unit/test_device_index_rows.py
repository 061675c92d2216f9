"""``DeviceIndexer``: the rows a device resource is written with are exactly the store's own
extraction minus the vendor-coding rows (the series being that of the code without the vendor
coding), also when a series' fixed rows come from its memo."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fhir_server.search import extract_index
from fhir_server.storage._plan import prepare
from gateway.devices.index_rows import DeviceIndexer
from gateway.simulators import IntellivueSimulator, Physiology
from gateway.simulators.intellivue import _NUMERIC, _POLL_EXT, _WAVE
from mappers.association import tag_unconfirmed
from mappers.intellivue import PollResult, decode_message, poll_to_fhir
from mappers.pb840 import decode_response, vent_record_to_fhir
from mappers.profiles import load_profile
from mappers.terminology import VENDOR_CODE_PREFIX
from mappers.waveform import WAVES, waveform_observation

PB840 = Path("/work/shared/samples/pb840/mdpnp-pb840cpp_pb840_MISCF_sample.bin")


def _device_resources(at: datetime, patient: str | None) -> list[dict]:
    profile = load_profile("medtronic-pb840")
    out = vent_record_to_fhir(decode_response(PB840.read_bytes(), profile, received_at=at), profile, patient)
    out += [waveform_observation(spec=WAVES[k], device_ref="Device/v1", start=at, period_ms=20.0,
                                 samples=[1.5, 2.0, 2.5], subject_ref=patient) for k in ("paw", "flow")]
    monitor = IntellivueSimulator(Physiology("stable", 1))
    for obj in (_NUMERIC, _WAVE):
        (datagram,) = monitor._poll_reply(1, 1, obj, _POLL_EXT)
        poll = decode_message(datagram)
        assert isinstance(poll, PollResult)
        out += poll_to_fhir(poll, load_profile("philips-intellivue-mp"), "Device/m1", at, patient).resources
    return out


def _rows(res: dict, indexer) -> Counter:
    prepared = prepare(res["resourceType"], res["id"], res, indexer)
    assert prepared is not None
    return Counter(prepared.index)


def _names_vendor_code(row: tuple) -> bool:
    kind, values = row
    return ((kind == "token" and values[0] == "Observation.code")
            or (kind == "date" and values[0].startswith("Obs.pce|"))) and any(
        isinstance(v, str) and VENDOR_CODE_PREFIX in v for v in values)


def _is_series_row(row: tuple) -> bool:
    kind, values = row
    return kind == "member" or (kind == "date" and values[0].startswith("Obs.pce|"))


def _without_vendor_codings(res: dict) -> dict:
    out = copy.deepcopy(res)
    code = out.get("code", {})
    if "coding" in code:
        code["coding"] = [c for c in code["coding"] if not c["system"].startswith(VENDOR_CODE_PREFIX)]
    return out


def test_device_rows_are_the_stores_minus_redundant_vendor_codings() -> None:
    """... and exactly the store's with ``vendor_rows=True``."""
    indexer, keeping = DeviceIndexer(extract_index), DeviceIndexer(extract_index, vendor_rows=True)
    t0 = datetime.now(UTC)
    seen_dropped = False
    for second, patient in ((0, None), (1, "Patient/p1"), (2, "Patient/p1"), (3, "Patient/p2")):
        for res in _device_resources(t0 + timedelta(seconds=second), patient):
            if second == 3:
                tag_unconfirmed(res)
            full = _rows(res, extract_index)
            codings = res.get("code", {}).get("coding", ())
            standard = any(not c["system"].startswith(VENDOR_CODE_PREFIX) for c in codings)
            # without its vendor coding's rows, the series being that of the code without it
            expected = _rows(_without_vendor_codings(res), extract_index) if standard else full
            if standard:  # which is the store's minus the vendor rows, but for the series
                assert expected == Counter({r: n for r, n in full.items()
                                            if not _names_vendor_code(r) and not _is_series_row(r)}) + Counter(
                    {r: n for r, n in expected.items() if _is_series_row(r)}), res["id"]
            seen_dropped |= expected != full
            direct, store_made = indexer.prepare(copy.deepcopy(res)), prepare(
                res["resourceType"], res["id"], copy.deepcopy(res), extract_index)
            assert direct is not None and store_made is not None
            assert Counter(direct.index) == expected, res["id"]
            assert (direct.tail, direct.meta) == (store_made.tail, store_made.meta)
            kept = keeping.prepare(copy.deepcopy(res))
            assert kept is not None and Counter(kept.index) == full, res["id"]
    assert seen_dropped  # the IntelliVue and PB840 measurements carry a vendor coding
