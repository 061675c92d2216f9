"""Search-index rows of one resource, for the ``idx_*`` tables of ``fhir_server.storage.schema``.

``extract_index(type, resource)`` returns ``{table kind: [row, ...]}``; each row's keys are
exactly the table's columns minus ``pk`` and ``rid`` (the store adds ``rid``). An Observation
of a Patient also has ``member`` rows (``series_member``: which series hold its codings'
readings, composite.py): no rid, written once by the store, never deleted with the resource. It runs on the
ingest hot path, so each resource type gets a precompiled extractor: a tuple of
``(path getter, value handler, param key)`` built once from the registry, and the handlers
dispatch on the JSON shape (CodeableConcept, Coding, Identifier, Period, ...), never on
reflection. Numbers may arrive as ``int``, ``float`` or ``Decimal`` (the store parses with
``parse_float=Decimal``). Value semantics: https://hl7.org/fhir/R4B/search.html
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from .composite import MEMBER_KIND, MEMBER_PARAM, series_date_rows, series_rows
from .dates import MAX_US, MIN_US, date_range
from .normalize import norm_text, parse_reference
from .registry import SearchParam, search_params
from .ucum import UCUM_SYSTEM, canonical

__all__ = ["extract_index", "indexed_elements"]

Row = dict[str, Any]
Rows = list[Row]
Getter = Callable[[Mapping[str, Any]], list[Any]]
Handler = Callable[[Any, str, Rows], None]
Extractor = Callable[[Mapping[str, Any]], dict[str, Rows]]

# Concrete element suffixes of a choice element ``x[x]``, per search parameter type.
_CHOICES = {
    "date": ("DateTime", "Period", "Instant", "Date"),
    "quantity": ("Quantity",),
    "token": ("CodeableConcept", "Coding", "Code", "Boolean", "String", "Identifier"),
    "reference": ("Reference",),
    "number": ("Decimal", "Integer"),
    "string": ("String",),
    "uri": ("Uri", "Canonical", "Url"),
}
_NUMBER = (int, float, Decimal)
_NAME_PARTS = ("family", "text")
_NAME_LISTS = ("given", "prefix", "suffix")
_ADDRESS_PARTS = ("city", "district", "state", "postalCode", "country", "text")


# ---- path getters -------------------------------------------------------------------------

def _steps(path: str, ptype: str) -> list[tuple[str, ...]]:
    steps: list[tuple[str, ...]] = []
    for seg in path.split("."):
        if seg.endswith("[x]"):
            steps.append(tuple(seg[:-3] + s for s in _CHOICES[ptype]))
        else:
            steps.append((seg,))
    return steps


def _getter(path: str, ptype: str) -> Getter:
    steps = _steps(path, ptype)
    if len(steps) == 1 and len(steps[0]) == 1:
        key = steps[0][0]

        def one(res: Mapping[str, Any]) -> list[Any]:
            v = res.get(key)
            if v is None:
                return []
            return v if type(v) is list else [v]

        return one

    def walk(res: Mapping[str, Any]) -> list[Any]:
        cur: list[Any] = [res]
        for keys in steps:
            nxt: list[Any] = []
            for obj in cur:
                if not isinstance(obj, dict):
                    continue
                for k in keys:
                    v = obj.get(k)
                    if v is None:
                        continue
                    if type(v) is list:
                        nxt.extend(v)
                    else:
                        nxt.append(v)
            cur = nxt
        return cur

    return walk


# ---- value handlers -----------------------------------------------------------------------

def _token(v: Any, key: str, rows: Rows) -> None:
    if type(v) is str:
        rows.append({"param": key, "system": None, "code": v, "text": None})
    elif type(v) is bool:
        rows.append({"param": key, "system": None, "code": "true" if v else "false", "text": None})
    elif isinstance(v, dict):
        _token_dict(v, key, rows)


def _token_dict(v: dict[str, Any], key: str, rows: Rows) -> None:
    codings = v.get("coding")
    if codings is not None or "text" in v:  # CodeableConcept
        text = v.get("text")
        cc_text = norm_text(text) if type(text) is str else None
        for c in codings or ():
            disp = c.get("display")
            t = cc_text if cc_text is not None else (norm_text(disp) if type(disp) is str else None)
            rows.append({"param": key, "system": c.get("system"), "code": c.get("code"), "text": t})
        if not codings and cc_text is not None:
            rows.append({"param": key, "system": None, "code": None, "text": cc_text})
    elif "code" in v:  # Coding
        disp = v.get("display")
        t = norm_text(disp) if type(disp) is str else None
        rows.append({"param": key, "system": v.get("system"), "code": v["code"], "text": t})
    elif "value" in v:  # Identifier, ContactPoint
        ty = v.get("type")
        t = ty.get("text") if isinstance(ty, dict) else None
        rows.append({"param": key, "system": v.get("system"), "code": str(v["value"]),
                     "text": norm_text(t) if type(t) is str else None})


def _uri(v: Any, key: str, rows: Rows) -> None:
    if type(v) is str:
        rows.append({"param": key, "system": None, "code": v, "text": None})


def _string_row(s: Any, key: str, rows: Rows) -> None:
    if type(s) is str and s:
        rows.append({"param": key, "value": norm_text(s), "exact": s})


def _string(v: Any, key: str, rows: Rows) -> None:
    if type(v) is str:
        _string_row(v, key, rows)
    elif isinstance(v, dict):
        parts: tuple[str, ...]
        lists: tuple[str, ...]
        if "family" in v or "given" in v or "prefix" in v or "suffix" in v:  # HumanName
            parts, lists = _NAME_PARTS, _NAME_LISTS
        elif "line" in v or "city" in v or "postalCode" in v:  # Address
            parts, lists = _ADDRESS_PARTS, ("line",)
        else:
            parts, lists = ("text",), ()
        for p in parts:
            _string_row(v.get(p), key, rows)
        for p in lists:
            for s in v.get(p) or ():
                _string_row(s, key, rows)


def _bound(text: Any, index: int, default: int) -> int:
    if type(text) is not str:
        return default
    try:
        return date_range(text)[index]
    except ValueError:
        return default


def _date(v: Any, key: str, rows: Rows) -> None:
    if type(v) is str:
        try:
            lo, hi = date_range(v)
        except ValueError:
            return  # validated at the edge; an unparseable value is simply not indexed
        rows.append({"param": key, "lo": lo, "hi": hi})
    elif isinstance(v, dict) and ("start" in v or "end" in v):  # Period: open ends are open
        rows.append({"param": key, "lo": _bound(v.get("start"), 0, MIN_US),
                     "hi": _bound(v.get("end"), 1, MAX_US)})


def _quantity(v: Any, key: str, rows: Rows) -> None:
    if not isinstance(v, dict):
        return
    value = v.get("value")
    if not isinstance(value, _NUMBER) or type(value) is bool:
        return
    f = float(value)
    system = v.get("system")
    code = v.get("code") or v.get("unit")
    canon_code, canon_value = canonical(code, f) if system in (UCUM_SYSTEM, None) else (code, f)
    rows.append({"param": key, "system": system, "code": code, "value": f,
                 "canon_code": canon_code, "canon_value": canon_value})


def _number(v: Any, key: str, rows: Rows) -> None:
    if isinstance(v, _NUMBER) and type(v) is not bool:
        rows.append({"param": key, "value": float(v)})


def _reference_handler(targets: tuple[str, ...]) -> Handler:
    allowed = frozenset(targets)

    def handle(v: Any, key: str, rows: Rows) -> None:
        if isinstance(v, dict):
            ref = v.get("reference")
        elif type(v) is str:  # canonical
            ref = v
        else:
            return
        if type(ref) is not str or not ref or ref[0] == "#":
            return
        ttype, tid, url = parse_reference(ref)
        if allowed and ttype not in allowed and (ttype is not None or url is None):
            return
        rows.append({"param": key, "target_type": ttype, "target_id": tid, "url": url})

    return handle


_HANDLERS: dict[str, Handler] = {
    "token": _token, "uri": _uri, "string": _string, "date": _date,
    "quantity": _quantity, "number": _number,
}


# ---- per-type compilation -----------------------------------------------------------------

def _handler(p: SearchParam) -> Handler:
    if p.type == "reference":
        return _reference_handler(p.target_types)
    return _HANDLERS[p.type]


def _compile(resource_type: str) -> Extractor:
    plan: list[tuple[tuple[str, ...], Getter, Handler, str, str]] = []
    for p in search_params(resource_type).values():
        if p.rows_of:
            continue  # answered from the broader parameter's rows (shared_rows.py)
        for path in p.paths:
            plan.append((_steps(path, p.type)[0], _getter(path, p.type), _handler(p), p.key, p.table))
    kinds = tuple(sorted({t for *_, t in plan}))
    steps = tuple(plan)
    combo = resource_type == "Observation"

    def extract(res: Mapping[str, Any]) -> dict[str, Rows]:
        out: dict[str, Rows] = {k: [] for k in kinds}
        for firsts, get, handle, key, table in steps:
            # most paths start at an element the resource does not have (an Observation
            # has ~7 of the ~14 its parameters read): skip them without calling the getter
            for first in firsts:
                if first in res:
                    break
            else:
                continue
            vals = get(res)
            if vals:
                rows = out[table]
                for v in vals:
                    handle(v, key, rows)
        if combo:
            params, members = series_rows(out["token"], out["reference"])
            out["date"] += series_date_rows(params, out["date"])
            if members:
                out[MEMBER_KIND] = [{"param": MEMBER_PARAM, "pkey": pk, "set_param": sp} for pk, sp in members]
        return out

    return extract


_EXTRACTORS: dict[str, Extractor] = {}


def extract_index(resource_type: str, resource: Mapping[str, Any]) -> dict[str, Rows]:
    """Index rows of ``resource`` by table kind (token, string, date, reference, quantity, number).

    Types without search parameters yield ``{}``. Kinds the type uses are always present,
    possibly empty, so a store can delete-and-insert per kind.
    """
    ex = _EXTRACTORS.get(resource_type)
    if ex is None:
        ex = _EXTRACTORS[resource_type] = _compile(resource_type)
    return ex(resource)


_INDEXED: dict[str, frozenset[str]] = {}


def indexed_elements(resource_type: str) -> frozenset[str]:
    """The top-level element names (choice elements spelled out) that ``extract_index`` reads.
    Each parameter reads one of them, so apart from an Observation's series rows (which need
    its ``subject`` and ``code`` together) a resource's rows are the union of the rows of each
    of these elements alone, and an element not named here never adds a row: a caller that
    indexes many similar resources can memoise rows per element."""
    names = _INDEXED.get(resource_type)
    if names is None:
        names = _INDEXED[resource_type] = frozenset(
            key for p in search_params(resource_type).values() if not p.rows_of
            for path in p.paths for key in _steps(path, p.type)[0])
    return names
