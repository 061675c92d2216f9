"""A hidden composite index key: Observation ``patient`` + ``code`` in one ``idx_token`` row.

Why: the ICU's most frequent search is ``Observation?patient=X&code=sys|c&date=...``. With
one index row per parameter, any plan must visit every observation of the patient (or every
observation of the code) and probe the others: ~10,000 probes (~7 ms on SQLite) for a
patient with 10 series of 1,000 readings. One extra token row per coding, keyed
``composite_key(patient id, system, code)`` under the param ``Observation.patient-code``, lets
that pair be a single index range (one series), so the date check runs on that series only.

The key is short because every ingest commit appends to the tail leaf of each series it
touches, in two indexes: shorter keys mean fuller leaves and fewer page splits, ~12 % fewer
pages a commit in the MLLP bench (docs/mllp-ingest-performance.md). It is a 72-bit hash of the
patient id (a collision between two patients is about as likely as between two uuid5 ids),
then the system, two characters for LOINC, MDC and SNOMED CT (a space first: a FHIR uri holds
no whitespace, so no real system reads the same), then the code. Systems and codes stay
readable, as the device feeds' row filter needs (``gateway/devices/index_rows.py``).

A second hidden row per key puts the series on the *date* index: an ``idx_date`` row whose
``param`` is ``"Obs.pce|" + key`` (``end_param``) and whose ``lo`` and ``hi`` both hold the
latest end (``max(hi)``) of the Observation's ``date`` rows. ``ix_date_lo (param, lo, rid)``
then orders one patient's readings of one code by time: ``$lastn`` reads the newest ``n``
entries of that index range, and ``date=ge|gt|sa|eq|ap`` searches start at the first entry
that can match (every match ends at or after the value's start), instead of probing the
whole series. A key too long for the ``param`` column keeps its first characters and ends
in a hash of the whole key, so every series has its rows.

Every coding with a code has a key, a coding without a system too (system ``""``): all of a
patient's series then sit in one range of ``ix_date_lo``, ``"Obs.pce|" + patient hash + "|"``,
and ``$lastn`` by category walks that range series by series (``patient_series_bounds``)
instead of reading every observation of the patient.

The key is not a registered search parameter (clients cannot name it; it is not in the
CapabilityStatement): ``extract.py`` writes it and ``sql_where.py`` uses it when a query has
a plain ``patient`` clause (or ``subject=Patient/...``) and a plain ``code`` clause whose values all carry a system.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from functools import lru_cache
from itertools import product
from typing import Any

from .query_parts import Clause
from .values import ReferenceValue, TokenValue

__all__ = ["COMPOSITE_PARAM", "composite_date_rows", "composite_key", "composite_keys", "composite_rows",
           "end_param", "patient_series_bounds"]

COMPOSITE_PARAM = "Observation.patient-code"
END_PREFIX = "Obs.pce|"
_PARAM_LEN = 96  # idx_date.param is VARCHAR(96)
_MAX_KEYS = 100  # beyond this many OR combinations the separate clauses are cheaper


_SHORT_SYSTEMS = {"http://loinc.org": " l", "urn:iso:std:iso:11073:10101": " m",
                  "http://snomed.info/sct": " s"}


@lru_cache(maxsize=65536)
def _patient_hash(patient_id: str) -> str:
    return base64.urlsafe_b64encode(hashlib.blake2b(patient_id.encode(), digest_size=9).digest()).decode()


def composite_key(patient_id: str, system: str | None, code: str) -> str:
    """The series key of one patient's one coding (see the module docstring)."""
    return f"{_patient_hash(patient_id)}|{_SHORT_SYSTEMS.get(system or '', system or '')}|{code}"


def patient_series_bounds(patient_id: str) -> tuple[str, str]:
    """``(lo, hi)``: every end-time row param of the patient's series lies strictly between."""
    lo = f"{END_PREFIX}{_patient_hash(patient_id)}|"
    return lo, lo[:-1] + "}"  # "}" follows "|"; hashes are URL-safe base64, below both


def composite_rows(resource: Mapping[str, Any], tokens: list[dict[str, Any]],
                   refs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Extra ``idx_token`` rows for an Observation whose patient and code rows are given."""
    # the rows of the patient parameter: subject rows of a Patient (shared_rows.py)
    pids = [r["target_id"] for r in refs if r["param"] == "Observation.subject"
            and r["target_type"] == "Patient" and r["target_id"] is not None]
    if not pids:
        return []
    return [
        {"param": COMPOSITE_PARAM, "system": None, "code": composite_key(pid, t["system"], t["code"]),
         "text": None}
        for t in tokens
        if t["param"] == "Observation.code" and t["code"]
        for pid in pids
    ]


def end_param(key: str) -> str:
    """The ``idx_date`` param of a composite key's end-time row."""
    p = END_PREFIX + key
    if len(p) <= _PARAM_LEN:
        return p
    digest = base64.urlsafe_b64encode(hashlib.blake2b(key.encode(), digest_size=12).digest()).decode()
    return f"{p[:_PARAM_LEN - len(digest) - 1]}~{digest}"


def composite_date_rows(composite: list[dict[str, Any]], dates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Extra ``idx_date`` rows: one per composite key, at the Observation's latest end time."""
    ends = [d["hi"] for d in dates if d["param"] == "Observation.date"]
    if not ends or not composite:
        return []
    end = max(ends)
    params = dict.fromkeys(end_param(r["code"]) for r in composite)
    return [{"param": p, "lo": end, "hi": end} for p in params]


def _plain(c: Clause, name: str) -> bool:
    return c.param.resource_type == "Observation" and c.param.name == name and c.modifier is None


def _patient_clause(c: Clause) -> bool:
    if _plain(c, "patient"):
        return True
    # subject=Patient/x is the same search as patient=x
    return _plain(c, "subject") and all(
        isinstance(v, ReferenceValue) and v.target_type == "Patient" for v in c.values)


def composite_keys(clauses: list[Clause]) -> tuple[list[str], list[Clause]] | None:
    """``(keys, clauses left)`` when a patient and a code clause can use the composite key."""
    patient = next((c for c in clauses if _patient_clause(c)), None)
    code = next((c for c in clauses if _plain(c, "code")), None)
    if patient is None or code is None:
        return None
    pids = [v.target_id for v in patient.values
            if isinstance(v, ReferenceValue) and v.target_id and v.target_type in (None, "Patient")]
    codes = [(v.system, v.code) for v in code.values
             if isinstance(v, TokenValue) and v.system and v.code]
    if len(pids) != len(patient.values) or len(codes) != len(code.values):
        return None
    if len(pids) * len(codes) > _MAX_KEYS:
        return None
    keys = [composite_key(p, s, c) for p, (s, c) in product(pids, codes)]
    return keys, [c for c in clauses if c is not patient and c is not code]
