"""The search-index rows a device feed's resources are written with, and how they are built.

What is indexed. A device Observation's ``code`` carries the standard coding (LOINC, MDC) and,
as a third or second coding, the device's own code (``urn:vitalgate:vendor-code:*``: a PB840
field id, an IntelliVue NOM id). The vendor coding stays in the stored resource (nothing the
device sent is lost, and a reader sees exactly what the profile mapped), but when a standard
coding is present it is not indexed: each indexed coding costs three index rows (the ``code``
token, the patient+code series key and its end-time row), about a fifth of a ward's index rows,
for codes nobody searches by (clients search the MDC or LOINC code). An Observation whose only
coding is the vendor's (ventilator settings, the alarm panel) keeps its rows: that code is the
only way to find it.

How. Rows are built by ``Store.prepare`` in the device client's task, before the record is
queued: the ingest writer's transaction (the one serial step) only inserts them. A device
repeats the same series every second (same code, category, status, patient, device, tag):
only the time and the value change. ``DeviceIndexer`` extracts the rows of the series' fixed
elements once and keeps them; per Observation it extracts only the elements that vary, and
adds the series' end-time rows from the two (``composite_date_rows``). The rows are exactly
the store's own extraction minus the vendor rows (``tests/gateway/unit/test_device_index_rows``
checks it on every device mapping); building them costs about a third of a full extraction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fhir_server.search.composite import COMPOSITE_PARAM, composite_date_rows
from fhir_server.storage import Store, dumps
from fhir_server.storage.types import Prepared
from mappers.terminology import VENDOR_CODE_PREFIX

__all__ = ["DeviceIndexer", "prepare_device_resource"]

Rows = Mapping[str, Sequence[Mapping[str, Any]]]
Extract = Any  # the store's indexer: (type, resource) -> {table kind: [row, ...]}

_CODE_PARAMS = frozenset({"Observation.code", COMPOSITE_PARAM})
# Observation elements that stay the same across a device's series; all others (time, value,
# components, identifier, interpretation, notes) are extracted per Observation
_SERIES_ELEMENTS = frozenset({"resourceType", "status", "category", "code", "subject", "device", "meta",
                              "encounter"})
_MAX_SERIES = 50_000  # ~25 series a bed: far more than a node's beds; cleared when exceeded


def _has_standard_coding(res: Mapping[str, Any]) -> bool:
    return any(not str(c.get("system", "")).startswith(VENDOR_CODE_PREFIX)
               for c in res.get("code", {}).get("coding", ()))


def _vendor_code_row(row: Mapping[str, Any]) -> bool:
    if row["param"] not in _CODE_PARAMS:
        return False
    return str(row.get("system") or "").startswith(VENDOR_CODE_PREFIX) or VENDOR_CODE_PREFIX in str(row.get("code"))


class DeviceIndexer:
    """An indexer for ``Store.prepare`` giving the store's rows for device resources, minus the
    vendor-coding rows, with each series' fixed rows extracted once."""

    def __init__(self, extract: Extract) -> None:
        self._extract = extract
        self._series: dict[bytes, Rows] = {}

    def __call__(self, type_: str, res: Mapping[str, Any]) -> Rows:
        if type_ != "Observation":
            return self._extract(type_, res)
        fixed = {k: v for k, v in res.items() if k in _SERIES_ELEMENTS}
        key = dumps(fixed)
        rows = self._series.get(key)
        if rows is None:
            if len(self._series) >= _MAX_SERIES:
                self._series.clear()
            rows = self._series[key] = self._fixed_rows(type_, fixed)
        varying = {k: v for k, v in res.items() if k not in _SERIES_ELEMENTS}
        varying["resourceType"] = type_
        out = {kind: list(entries) for kind, entries in rows.items()}
        for kind, entries in self._extract(type_, varying).items():
            out.setdefault(kind, []).extend(entries)
        series = [r for r in rows.get("token", ()) if r["param"] == COMPOSITE_PARAM]
        if series:  # the series' end-time rows need its keys (fixed) and the time (varying)
            out.setdefault("date", []).extend(composite_date_rows(series, out.get("date", [])))
        return out

    def _fixed_rows(self, type_: str, fixed: dict[str, Any]) -> Rows:
        rows = self._extract(type_, fixed)
        if not _has_standard_coding(fixed):
            return rows
        return {kind: [r for r in entries if not _vendor_code_row(r)] for kind, entries in rows.items()}


def prepare_device_resource(store: Store, indexer: DeviceIndexer, res: dict[str, Any]) -> Prepared | None:
    """``store.prepare`` for a device feed's resource, with the feed's ``indexer``."""
    return store.prepare(res["resourceType"], res["id"], res, indexer=indexer)
