"""``Store.prepare``: a write prepared ahead (JSON after ``meta``, index rows) plans exactly the
rows the flush computes itself, for every resource the HL7v2 samples map to."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_server.search import extract_index
from fhir_server.storage import PendingWrite, loads
from fhir_server.storage._plan import Keys, plan, prepare
from mappers.hl7v2 import MappingContext, map_message, parse

SAMPLES = sorted(Path("/work/shared/samples/hl7v2").glob("*"))


def _mapped() -> list[dict]:
    out = []
    for path in SAMPLES:
        try:
            out.extend(map_message(parse(path.read_bytes()), MappingContext()).resources)
        except Exception:  # noqa: BLE001 - refused samples map to nothing
            continue
    return out


def _planned(res: dict, version: int, ready: bool):
    w = PendingWrite(res["resourceType"], res["id"], res, "PUT",
                     prepared=prepare(res["resourceType"], res["id"], res, extract_index) if ready else None)
    state = {}
    for _ in range(version - 1):  # earlier versions of the same resource
        plan([PendingWrite(w.type, w.id, res, "PUT")], state, Keys(0, 0, 0), extract_index, 1)
    return plan([w], state, Keys(10, 20, 30), extract_index, 1_700_000_000_123_456)


@pytest.mark.parametrize("version", [1, 2])
def test_prepared_plans_the_same_rows(version):
    resources = _mapped()
    assert len(resources) > 20 and {"Observation", "Patient", "Device"} <= {r["resourceType"] for r in resources}
    for res in resources:
        a, b = _planned(res, version, True), _planned(res, version, False)
        assert a.versions == b.versions, res["id"]
        assert a.index == b.index and a.new_resources == b.new_resources and a.log == b.log


def test_prepared_body_keeps_decimals_and_empty_resources():
    res = loads('{"resourceType":"Basic","id":"b1","code":{"text":"x"},"extension":[{"url":"u","valueDecimal":1.50}]}')
    assert b'"valueDecimal":1.50' in _planned(res, 1, True).versions[0][-1]
    empty = {"resourceType": "Basic", "id": "b2"}
    assert _planned(empty, 1, True).versions == _planned(empty, 1, False).versions


@pytest.mark.parametrize("meta", [{"profile": ["http://x/p"]},
                                  {"tag": [{"system": "urn:t", "code": "c"}], "security": [{"code": "R"}]}, {}])
def test_prepared_resource_with_its_own_meta_plans_the_same_rows(meta):
    res = {"resourceType": "Observation", "id": "o1", "meta": meta, "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}
    for version in (1, 2):
        a, b = _planned(res, version, True), _planned(res, version, False)
        assert a.versions == b.versions and a.index == b.index


def test_resource_whose_meta_holds_a_version_is_left_to_the_flush():
    res = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "7", "profile": ["http://x/p"]}}
    assert prepare("Patient", "p1", res, extract_index) is None
