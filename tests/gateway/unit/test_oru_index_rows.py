"""The MLLP ingest prepares ORU resources with ``DeviceIndexer(..., vendor_rows=True)``: its
rows and JSON must be exactly the store's own, also when a series' rows come from the memo."""

from __future__ import annotations

import copy
import dataclasses
import re
from collections import Counter
from pathlib import Path

import pytest

from fhir_server.search import extract_index
from fhir_server.storage._plan import prepare
from gateway.devices.index_rows import DeviceIndexer
from gateway.mllp.wiring import mapping_context
from gateway.settings import Settings
from mappers.hl7v2 import map_message, parse

SAMPLES = [p for p in sorted(Path("/work/shared/samples/hl7v2").glob("*ORU_R*.hl7")) if "python-hl7" not in p.name]


CTX = dataclasses.replace(mapping_context(Settings()), accepted_processing_ids=frozenset({"P", "T"}))
_DIGITS = bytes.maketrans(b"0123456789", b"1234567890")


def _resources(raw: bytes) -> list[dict]:
    return map_message(parse(raw), CTX).resources


def _later_obx(segment: bytes) -> bytes:
    fields = segment.split(b"|")
    if len(fields) > 5:
        fields[5] = fields[5].translate(_DIGITS)  # other values
    if len(fields) > 14 and (m := re.match(rb"\d{14}", fields[14])):
        fields[14] = fields[14][:13] + (b"8" if m[0][13:] == b"9" else m[0][13:].translate(_DIGITS)) + fields[14][14:]
    return b"|".join(fields)


def _later(raw: bytes) -> bytes:
    """The same message with other OBX values and (where to the second) times: same series."""
    return b"\r".join(_later_obx(s) if s.lstrip().startswith(b"OBX") else s
                      for s in re.split(rb"\r", raw))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_oru_rows_are_the_stores(path: Path) -> None:
    indexer = DeviceIndexer(extract_index, vendor_rows=True)
    raw = path.read_bytes()
    # twice (the second time every series and element comes from the memo), then a variant
    for resources in (_resources(raw), _resources(raw), _resources(_later(raw))):
        for res in resources:
            store_made = prepare(res["resourceType"], res["id"], copy.deepcopy(res), extract_index)
            direct = indexer.prepare(copy.deepcopy(res))
            assert direct is not None and store_made is not None
            assert Counter(direct.index) == Counter(store_made.index), res["id"]
            assert (direct.tail, direct.meta) == (store_made.tail, store_made.meta)

