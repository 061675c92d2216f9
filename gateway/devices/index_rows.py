"""Which search-index rows a device feed's resources are written with.

A device Observation's ``code`` carries the standard coding (LOINC, MDC) and, as a third or
second coding, the device's own code (``urn:vitalgate:vendor-code:*``: a PB840 field id, an
IntelliVue NOM id). The vendor coding stays in the stored resource (nothing the device sent
is lost, and a reader sees exactly what the profile mapped), but when a standard coding is
present it is not indexed: each indexed coding costs three index rows (the ``code`` token,
the patient+code series key and its end-time row), about a fifth of a ward's index rows for
codes nobody searches by (clients search the MDC or LOINC code). An Observation whose only
coding is the vendor's (ventilator settings, the alarm panel) keeps its rows: that code is
the only way to find it.

The rows are built by ``Store.prepare`` in the device client's task, before the record is
queued: the ingest writer's transaction (the one serial step) only inserts them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhir_server.storage import Store
from fhir_server.storage.types import Prepared
from mappers.terminology import VENDOR_CODE_PREFIX

__all__ = ["prepare_device_resource"]

_CODE_PARAMS = frozenset({"Observation.code", "Observation.patient-code"})
_SERIES_PREFIX = "Obs.pce|"  # the patient+code series' end-time rows (fhir_server.search.composite)


def _has_standard_coding(res: dict[str, Any]) -> bool:
    return any(not str(c.get("system", "")).startswith(VENDOR_CODE_PREFIX)
               for c in res.get("code", {}).get("coding", ()))


def _vendor_code_row(row: tuple[str, tuple[Any, ...]]) -> bool:
    values = row[1]
    param = values[0]
    if param not in _CODE_PARAMS and not str(param).startswith(_SERIES_PREFIX):
        return False
    return any(type(v) is str and VENDOR_CODE_PREFIX in v for v in values)


def prepare_device_resource(store: Store, res: dict[str, Any]) -> Prepared | None:
    """``store.prepare`` for ``res``, without the index rows of a redundant vendor coding."""
    prepared = store.prepare(res["resourceType"], res["id"], res)
    if prepared is None or res["resourceType"] != "Observation" or not _has_standard_coding(res):
        return prepared
    keep = tuple(row for row in prepared.index if not _vendor_code_row(row))
    return prepared if len(keep) == len(prepared.index) else replace(prepared, index=keep)
