"""Round trip of official R4B examples (tests/data/r4b-examples, CC0) through REST.

Each example is created (PUT with its id, and POST with a server id), read back and compared
with the file: equal JSON, decimals written exactly as in the file, apart from
``meta.versionId``/``meta.lastUpdated`` (and the id, for POST).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fhir_server.storage import loads

EXAMPLES = Path(__file__).parents[2] / "data" / "r4b-examples"
FILES = sorted(EXAMPLES.glob("*.json"))


def comparable(value: Any) -> Any:
    """The JSON with server-set meta removed and decimals as their exact text."""
    if isinstance(value, Decimal):
        return ("decimal", str(value))
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, dict):
        out = {k: comparable(v) for k, v in value.items() if k != "meta"}
        meta = {k: comparable(v) for k, v in (value.get("meta") or {}).items()
                if k not in ("versionId", "lastUpdated")}
        if meta:
            out["meta"] = meta
        return out
    return value


def test_corpus_is_present():
    assert len(FILES) >= 100
    kinds = {f.name.split("-")[0] for f in FILES}
    assert {"Patient", "Observation", "Device", "Encounter", "DetectedIssue", "AuditEvent"} <= kinds


async def _round_trip(client, raw: bytes) -> list[str]:
    res = loads(raw)
    type_, id_ = res["resourceType"], res["id"]
    problems = []
    r = await client.put(f"{type_}/{id_}", content=raw)
    if r.status_code != 201:
        return [f"PUT {type_}/{id_}: {r.status_code} {r.text[:300]}"]
    got = await client.get(f"{type_}/{id_}")
    stored = loads(got.content)
    if comparable(stored) != comparable(res):
        problems.append(f"PUT/GET {type_}/{id_} differs")
    if stored["meta"]["versionId"] != "1":
        problems.append(f"{type_}/{id_}: versionId {stored['meta']['versionId']}")
    r = await client.post(type_, content=raw)
    if r.status_code != 201:
        return [*problems, f"POST {type_}: {r.status_code} {r.text[:300]}"]
    new_id = r.json()["id"]
    again = loads((await client.get(f"{type_}/{new_id}")).content)
    if new_id == id_ or comparable({**again, "id": id_}) != comparable(res):
        problems.append(f"POST/GET {type_} (from {id_}) differs")
    return problems


async def test_examples_round_trip(client):
    problems: list[str] = []
    for f in FILES:
        problems += await _round_trip(client, f.read_bytes())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["Observation-decimal.json"])
async def test_decimal_example_keeps_its_text(client, name):
    raw = (EXAMPLES / name).read_bytes()
    await client.put("Observation/decimal", content=raw)
    body = (await client.get("Observation/decimal")).content
    for text in (b"1.00", b"1E-22", b"1.000000000000000000E-245", b"-1.000000000000000000E+245"):
        assert text in body, text
