"""The search-index rows a device feed's resources are written with, and how they are built.

What is indexed. A device Observation's ``code`` carries the standard coding (LOINC, MDC) and,
as a third or second coding, the device's own code (``urn:vitalgate:vendor-code:*``: a PB840
field id, an IntelliVue NOM id). The vendor coding stays in the stored resource (nothing the
device sent is lost, and a reader sees exactly what the profile mapped), but when a standard
coding is present it is not indexed: it would cost a ``code`` token row per Observation, a
large share of a ward's index rows, for codes nobody searches by (clients search the MDC or
LOINC code). An Observation whose only
coding is the vendor's (ventilator settings, the alarm panel) keeps its rows: that code is the
only way to find it.

How. Rows are built by ``DeviceIndexer.prepare`` (what ``Store.prepare`` gives, the store's
own JSON) in the device client's task, before the record is queued: the ingest writer's
transaction (the one serial step) only inserts them. A device repeats the same series every
second (same code, category, status, patient, device, tag): only the time and the value
change. ``DeviceIndexer`` extracts the rows of the series' fixed elements once and keeps them
in the index tables' column order; per Observation it adds the rows of each varying element
(``extract_index`` on that element alone, memoised by the element's JSON: a poll's numerics
share one time stamp, a steady vital repeats its value; elements no parameter reads, such as
a waveform's SampledData, are skipped: ``indexed_elements``) and the series' end-time rows
from the two. The rows are exactly the store's own extraction minus the vendor rows, the
series being that of the code without its vendor coding (``tests/gateway/unit/
test_device_index_rows`` checks it on every device mapping); building
them costs about a third of what ``Store.prepare`` with the full extraction costs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from fhir_server.search import indexed_elements
from fhir_server.search.composite import END_PREFIX, UNDATED, series_rows
from fhir_server.storage import dumps
from fhir_server.storage._plan import INDEX_COLS, ROW_COLS
from fhir_server.storage._plan import prepare as store_prepare
from fhir_server.storage.schema import MEMBER_KIND
from fhir_server.storage.types import Prepared
from mappers.terminology import VENDOR_CODE_PREFIX

__all__ = ["DeviceIndexer"]

Rows = Mapping[str, Sequence[Mapping[str, Any]]]
Extract = Any  # the store's indexer: (type, resource) -> {table kind: [row, ...]}

# Observation elements that stay the same across a device's series; all others (time, value,
# components, identifier, interpretation, notes) are extracted per Observation
_SERIES_ELEMENTS = frozenset({"resourceType", "status", "category", "code", "subject", "device", "meta",
                              "encounter"})
# an HL7v2 Observation's identifier holds its effective time: unique, so not memoised
_UNIQUE_ELEMENTS = frozenset({"identifier"})
_MAX_SERIES = 50_000  # ~25 series a bed: far more than a node's beds; cleared when exceeded


def _has_standard_coding(res: Mapping[str, Any]) -> bool:
    return any(not str(c.get("system", "")).startswith(VENDOR_CODE_PREFIX)
               for c in res.get("code", {}).get("coding", ()))


def _vendor_code_row(row: Mapping[str, Any]) -> bool:
    return row["param"] == "Observation.code" and str(row.get("system") or "").startswith(VENDOR_CODE_PREFIX)


Row = tuple[str, tuple[Any, ...]]  # (table kind, the row in the table's column order, without rid)


def _as_tuples(rows: Rows) -> list[Row]:
    out: list[Row] = []
    for kind, entries in rows.items():
        cols = ROW_COLS[kind]
        out.extend((kind, tuple([e.get(c) for c in cols])) for e in entries)
    return out


def _no_rows(type_: str, res: Mapping[str, Any]) -> Rows:
    return {}


@dataclass(frozen=True, slots=True)
class _Series:
    rows: tuple[Row, ...]  # the fixed elements' rows, already in column order
    end_params: tuple[str, ...]  # the series' end-time row params (one per series key)
    fixed_ends: list[Any]  # ``Observation.date`` ends among the fixed rows (none: no time in them)


class DeviceIndexer:
    """``prepare`` gives what ``Store.prepare`` gives for device resources, with the store's
    rows minus the vendor-coding rows, each series' fixed rows extracted once. ``extract``: the
    store's indexer (the search registry's ``extract_index``). ``vendor_rows``: keep the
    vendor-coding rows too, so the rows are exactly the store's (the MLLP ingest: an HL7v2
    sender's own code is searchable as the store would index it)."""

    def __init__(self, extract: Extract, *, vendor_rows: bool = False) -> None:
        self._extract = extract
        self._vendor_rows = vendor_rows
        self._series: dict[bytes, _Series] = {}
        # a varying element's rows, by its JSON: a poll's numerics (and a ventilator record's
        # values) share one time stamp, parsed once per poll, and a steady vital repeats its value
        self._elements: dict[tuple[str, str | bytes], tuple[Row, ...]] = {}
        # identifier shape (its systems) -> the token param its rows carry (_identifier_rows)
        self._id_templates: dict[tuple[str, ...], str] = {}
        # elements no search parameter reads (a waveform's SampledData): never extracted
        self._indexed = indexed_elements("Observation")

    def prepare(self, res: dict[str, Any]) -> Prepared | None:
        """``Store.prepare(res)`` with these rows, built as the store's column-order tuples
        directly: a series' fixed rows are converted once; per Observation, each varying
        element's rows come from a memo by its JSON (or are extracted alone), and elements no
        parameter reads are skipped."""
        type_ = res["resourceType"]
        # the JSON of the resource is the store's own; only the rows are built here
        base = store_prepare(type_, res["id"], res, _no_rows)
        if base is None:
            return None
        if type_ != "Observation":
            return Prepared(base.tail, tuple(_as_tuples(self._extract(type_, res))), base.meta)
        fixed = {k: v for k, v in res.items() if k in _SERIES_ELEMENTS}
        key = dumps(fixed)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= _MAX_SERIES:
                self._series.clear()
            series = self._series[key] = self._new_series(type_, fixed)
        rows = list(series.rows)
        varying: list[Row] = []
        for k, v in res.items():
            if k in _UNIQUE_ELEMENTS:  # one value per Observation: a memo entry never read again
                varying += self._identifier_rows(type_, k, v)
            elif k not in _SERIES_ELEMENTS and k in self._indexed:
                varying += self._element_rows(type_, k, v)
        rows += varying
        if series.end_params:
            ends = [r[_DATE_HI] for kind, r in varying if kind == "date" and r[_DATE_PARAM_AT] == _DATE_PARAM]
            ends += series.fixed_ends
            end = max(ends) if ends else UNDATED  # composite.series_date_rows
            rows += [("date", _date_row((p, end, None))) for p in series.end_params]
        return Prepared(base.tail, tuple(rows), base.meta)

    def _identifier_rows(self, type_: str, element: str, value: Any) -> list[Row]:
        """An HL7v2 Observation's identifiers (``system`` and ``value`` only, unique per
        Observation: they hold its time) give one token row each, the value as its code. The
        rows of the first identifiers of a shape (their systems) are extracted and, when they
        are exactly that, kept as the shape's template; later ones fill in their values (the
        extraction costs ~5 us an Observation, the fill well under one)."""
        shape = _identifier_shape(value)
        if shape is not None and (param := self._id_templates.get(shape)) is not None:
            return _identifier_token_rows(param, shape, value)
        rows = _as_tuples(self._extract(type_, {"resourceType": type_, element: value}))
        if shape is not None and rows and len(self._id_templates) < _MAX_SERIES:
            param = rows[0][1][_TOKEN_PARAM_AT]
            if rows == _identifier_token_rows(param, shape, value):
                self._id_templates[shape] = param
        return rows

    def _element_rows(self, type_: str, element: str, value: Any) -> tuple[Row, ...]:
        # a time is a string: its own key (no JSON of it); other values by their JSON
        key = (element, value if type(value) is str else dumps(value))
        rows = self._elements.get(key)
        if rows is None:
            if len(self._elements) >= _MAX_ELEMENTS:
                self._elements.clear()
            # tuples of plain values: the collector stops tracking them, a full collection
            # does not scan the memo (a list per entry would be scanned every time)
            alone = self._extract(type_, {"resourceType": type_, element: value})
            rows = self._elements[key] = tuple(_as_tuples(alone))
        return rows

    def _new_series(self, type_: str, fixed: dict[str, Any]) -> _Series:
        rows = self._fixed_rows(type_, fixed)
        # the fixed rows hold no date: the series' end-time rows are added per Observation. The
        # series is that of the codings indexed here (without an unindexed vendor coding)
        params, members = series_rows(rows.get("token", ()), rows.get("reference", ()))
        as_tuples = tuple(_as_tuples(rows)) + tuple((MEMBER_KIND, m) for m in members)
        ends = [r[_DATE_HI] for kind, r in as_tuples if kind == "date" and r[_DATE_PARAM_AT] == _DATE_PARAM]
        return _Series(as_tuples, tuple(params), ends)

    def _fixed_rows(self, type_: str, fixed: dict[str, Any]) -> Rows:
        rows = dict(self._extract(type_, fixed))
        rows.pop(MEMBER_KIND, None)  # _new_series: from the codings indexed here
        # without a time the extraction gives the series' rows at UNDATED: they are per Observation
        rows["date"] = [r for r in rows.get("date", ()) if not r["param"].startswith(END_PREFIX)]
        if self._vendor_rows or not _has_standard_coding(fixed):
            return rows
        return {kind: [r for r in entries if not _vendor_code_row(r)] for kind, entries in rows.items()}


_MAX_ELEMENTS = 50_000  # times and values of the last seconds of every bed; cleared when exceeded
_DATE_PARAM = "Observation.date"
_DATE_COLS = INDEX_COLS["date"]
_DATE_HI, _DATE_PARAM_AT = _DATE_COLS.index("hi"), _DATE_COLS.index("param")
_TOKEN_PARAM_AT = INDEX_COLS["token"].index("param")
# rows in the tables' column order from fixed-order tuples, in one call (a dict and a comprehension
# per row cost ~1 us): (param, end, None) -> a date row, (param, system, code, text, None) -> a
# token row (the None fills any other column)
_date_row = itemgetter(*[{"param": 0, "lo": 1, "hi": 1}.get(c, 2) for c in _DATE_COLS])
_token_row = itemgetter(*[{"param": 0, "system": 1, "code": 2, "text": 3}.get(c, 4) for c in INDEX_COLS["token"]])


def _identifier_token_rows(param: str, systems: tuple[str, ...], value: list[dict[str, str]]) -> list[Row]:
    return [("token", _token_row((param, s, i["value"], None, None))) for s, i in zip(systems, value, strict=True)]


def _identifier_shape(value: Any) -> tuple[str, ...] | None:
    """The systems of a list of ``{"system": str, "value": str}`` identifiers, else None."""
    if type(value) is not list or not value:
        return None
    systems = []
    for i in value:
        if type(i) is not dict or len(i) != 2 or type(i.get("system")) is not str or type(i.get("value")) is not str:
            return None
        systems.append(i["system"])
    return tuple(systems)
