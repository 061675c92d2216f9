"""Hidden series rows: one ``idx_date`` row per Observation and patient+code series.

Why: the ICU's most frequent searches are ``Observation?patient=X&code=sys|c&date=...`` and
``$lastn``. With one index row per parameter, any plan must visit every observation of the
patient (or every observation of the code) and probe the others: ~10,000 probes (~7 ms on
SQLite) for a patient with 10 series of 1,000 readings. One extra ``idx_date`` row per coding
makes one patient's one code a single index range: its ``param`` is ``"Obs.pce|" + key``
(``end_param``), the key ``composite_key(patient id, system, code)``, and its ``lo`` and ``hi``
both hold the latest end (``max(hi)``) of the Observation's ``date`` rows. ``ix_date_lo
(param, lo, rid)`` then holds each series in time order: a patient+code search reads the
series' range (``sql_where``), ``$lastn`` the newest ``n`` entries of it, and
``date=ge|gt|sa|eq|ap`` starts at the first entry that can match (every match ends at or after
the value's start) instead of probing the whole series (``sql_stream``, ``fastread``). An
Observation without a time has its row too, at ``UNDATED`` (below every real time): a
patient+code search finds it, ``$lastn`` and date bounds never do.

One row, not two: until migration 0008 a series also had a token row (``Observation.patient-code``
with the key as its code) for the patient+code search. The end-time row's param range answers
the same question, and the token rows were ~32 % of the index pages an ingest commit writes
(docs/mllp-ingest-performance.md).

The key is short because every ingest commit appends to the tail leaf of each series it
touches: shorter keys mean fuller leaves and fewer page splits. It is a 72-bit hash of the
patient id (a collision between two patients is about as likely as between two uuid5 ids),
then the system, two characters for LOINC, MDC and SNOMED CT (a space first: a FHIR uri holds
no whitespace, so no real system reads the same), then the code. A key too long for the
``param`` column keeps its first characters and ends in a hash of the whole key, so every
series has its rows.

Every coding with a code has a key, a coding without a system too (system ``""``): all of a
patient's series then sit in one range of ``ix_date_lo``, ``"Obs.pce|" + patient hash + "|"``,
and ``$lastn`` by category walks that range series by series (``patient_series_bounds``)
instead of reading every observation of the patient.

One row an Observation, not one a coding (migration 0009): the series key is the patient plus
the Observation's *whole* code, the set of its codings. A single coding's key is the coding's own
(``composite_key``); two or more codings (a LOINC+MDC heart rate) give ``set_key``, a hash of
the sorted ``system|code`` pairs under the same patient prefix. ``series_member(pkey, set_param)``
names every series that holds a coding's readings (its own series too, as ``(key, key)``); a
set's rows are written with the first reading stored in it (the store keeps the sets it has
committed, so the steady state writes none). A search for a patient's code reads the series
the membership names (``series_of``): their union is exactly the patient's Observations with
that coding, and it is usually one series. A LOINC+MDC+vendor reading wrote three rows until
0009 (18 for a bench message of eight Observations, 44 % of an ingest commit's WAL pages), one
now.

The rows are not a registered search parameter (clients cannot name them; they are not in the
CapabilityStatement): ``extract.py`` writes them and the search plans use them when a query has
a plain ``patient`` clause (or ``subject=Patient/...``) and a plain ``code`` clause whose values
all carry a system.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from itertools import product
from typing import Any

from fhir_server.storage.schema import MEMBER_KIND

from .query_parts import Clause
from .values import ReferenceValue, TokenValue

__all__ = ["END_PREFIX", "MEMBER_KIND", "MEMBER_PARAM", "UNDATED", "composite_key", "composite_keys", "end_param",
           "patient_series_bounds", "series_date_rows", "series_of", "series_rows", "set_key"]

END_PREFIX = "Obs.pce|"
MEMBER_PARAM = "Obs.member"  # their ``param`` (rows in memory carry one; the table has none)
UNDATED = -(2**63)  # the end-time row of an Observation without a time: below every real time
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


def set_key(patient_id: str, pairs: Sequence[tuple[str, str]]) -> str:
    """The series key of one patient's Observations coded with exactly ``pairs`` (two or more
    sorted ``(system, code)``): the patient's prefix, then ``&`` (no coding key has it there:
    a short system starts with a space, a URI with a letter, no system with ``|``) and a hash."""
    digest = hashlib.blake2b("\x1f".join(f"{s}\x1e{c}" for s, c in pairs).encode(), digest_size=12).digest()
    return f"{_patient_hash(patient_id)}|&{base64.urlsafe_b64encode(digest).decode()}"


def series_rows(tokens: Sequence[Mapping[str, Any]], refs: Sequence[Mapping[str, Any]]
                ) -> tuple[list[str], list[tuple[str, str]]]:
    """``(end-time row params, membership rows)`` of an Observation whose code and subject
    rows are given: one param a patient (its whole code's series), and a ``(coding param,
    series param)`` row per coding (one coding: its own series, ``(param, param)``)."""
    # the rows of the patient parameter: subject rows of a Patient (shared_rows.py)
    pids = [r["target_id"] for r in refs if r["param"] == "Observation.subject"
            and r["target_type"] == "Patient" and r["target_id"] is not None]
    if not pids:
        return [], []
    pairs = sorted({(t["system"] or "", t["code"]) for t in tokens if t["param"] == "Observation.code" and t["code"]})
    if not pairs:
        return [], []
    params: list[str] = []
    members: list[tuple[str, str]] = []
    for pid in dict.fromkeys(pids):
        if len(pairs) == 1:
            sp = end_param(composite_key(pid, *pairs[0]))
            params.append(sp)
            members.append((sp, sp))
            continue
        sp = end_param(set_key(pid, pairs))
        params.append(sp)
        members += [(end_param(composite_key(pid, s, c)), sp) for s, c in pairs]
    return params, members


def series_of(keys: Sequence[str], members: Sequence[tuple[str, str]]) -> list[str]:
    """The end-time row params whose union holds the readings of ``keys`` (coding keys): the
    series ``members`` (the ``series_member`` rows read for those keys) name. None named: the
    patient has no reading of those codes."""
    params = {end_param(k) for k in keys}
    return list(dict.fromkeys(sp for pk, sp in members if pk in params))


def end_param(key: str) -> str:
    """The ``idx_date`` param of a composite key's end-time row."""
    p = END_PREFIX + key
    if len(p) <= _PARAM_LEN:
        return p
    digest = base64.urlsafe_b64encode(hashlib.blake2b(key.encode(), digest_size=12).digest()).decode()
    return f"{p[:_PARAM_LEN - len(digest) - 1]}~{digest}"


def series_date_rows(params: list[str], dates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``idx_date`` rows of ``params``: at the Observation's latest end time, else ``UNDATED``."""
    if not params:
        return []
    ends = [d["hi"] for d in dates if d["param"] == "Observation.date"]
    end = max(ends) if ends else UNDATED
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
    # exactly one of each: the caller reads the series of this pair before the plan sorts the
    # clauses, and the plan must find the same pair
    patients = [c for c in clauses if _patient_clause(c)]
    codes_ = [c for c in clauses if _plain(c, "code")]
    if len(patients) != 1 or len(codes_) != 1:
        return None
    patient, code = patients[0], codes_[0]
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
