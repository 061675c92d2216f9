"""Query criteria (``Type?param=value&...``) evaluated in memory against one resource.

Subscription filters and topic query criteria are parsed once with the search parser
(``fhir_server.search.parse_clause``) and evaluated against the rows that
``extract_index`` produces for the resource: the same values search would find in the
index tables, so a filter matches exactly what the equivalent search would return.
Spec: https://hl7.org/fhir/R4B/search.html (value semantics), Backport IG filter criteria.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.errors import FhirError
from fhir_server.search import extract_index
from fhir_server.search.query_parts import Clause, parse_clause
from fhir_server.search.registry import SearchParam
from fhir_server.search.shared_rows import row_of
from fhir_server.search.values import (
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TextValue,
    TokenValue,
    parse_token,
    split_escaped,
)

Rows = Mapping[str, list[dict[str, Any]]]


class CriteriaError(ValueError):
    """A criteria string that cannot be evaluated (unknown parameter, chain, bad value)."""


@dataclass(frozen=True)
class IndexedResource:
    """A resource with its index rows grouped by parameter key, extracted once per change."""

    type: str
    id: str
    by_param: dict[str, list[dict[str, Any]]]

    @classmethod
    def of(cls, type_: str, resource: Mapping[str, Any], local: tuple[SearchParam, ...] = ()) -> IndexedResource:
        by_param: dict[str, list[dict[str, Any]]] = {}
        for rows in extract_index(type_, resource).values():
            for row in rows:
                by_param.setdefault(row["param"], []).append(row)
        for p in local:
            if p.resource_type == type_:
                by_param[p.key] = _local_token_rows(p, resource)
        return cls(type_, str(resource.get("id", "")), by_param)


def _local_token_rows(p: SearchParam, resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Token rows of a topic-defined parameter on a simple path (a code or CodeableConcept)."""
    cur: list[Any] = [resource]
    for step in p.paths[0].split("."):
        nxt: list[Any] = []
        for obj in cur:
            v = obj.get(step) if isinstance(obj, dict) else None
            nxt.extend(v if isinstance(v, list) else [] if v is None else [v])
        cur = nxt
    rows: list[dict[str, Any]] = []
    for v in cur:
        if isinstance(v, str):
            rows.append({"param": p.key, "system": None, "code": v, "text": None})
        elif isinstance(v, dict):
            for c in v.get("coding") or ([v] if "code" in v else []):
                rows.append({"param": p.key, "system": c.get("system"), "code": c.get("code"), "text": None})
    return rows


@dataclass(frozen=True)
class Criteria:
    """AND of clauses; each clause ORs its values."""

    resource_type: str
    clauses: tuple[Clause, ...]
    text: str

    def matches(self, res: IndexedResource) -> bool:
        return all(_clause(c, res) for c in self.clauses)

    def needles(self) -> frozenset[bytes] | None:
        """For one positive reference-id or token-code clause: its values as bytes (see SubscriptionSpec)."""
        for c in self.clauses:
            if c.negate or c.missing is not None or c.chain or c.param.name == "_id":
                continue
            vals: list[str | None] = []
            for v in c.values:
                if isinstance(v, ReferenceValue):
                    vals.append(v.target_id if v.url is None else None)
                elif isinstance(v, TokenValue):
                    vals.append(v.code)
                else:
                    vals.append(None)
            if vals and all(x and x.isprintable() and '"' not in x and "\\" not in x for x in vals):
                return frozenset(x.encode() for x in vals if x)
        return None


def split_criteria(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``Observation?code=x&patient=y`` → ("Observation", [("code", "x"), ("patient", "y")])."""
    type_, _, query = text.strip().partition("?")
    return type_, parse_qsl(query, keep_blank_values=True)


def compile_criteria(text: str, allowed: Callable[[str, str, str | None], bool] | None = None,
                     local: Mapping[str, SearchParam] | None = None) -> Criteria:
    """Parse ``Type?query``; ``allowed(type, param, modifier)`` restricts which params may appear.

    ``local`` holds token parameters a topic defines itself (``canFilterBy.filterDefinition``)
    that the search registry does not have, keyed ``Type.name``.
    """
    type_, params = split_criteria(text)
    if not type_ or not type_[0].isupper():
        raise CriteriaError(f"criteria must start with a resource type: {text!r}")
    clauses = []
    for name, raw in params:
        if raw == "":
            raise CriteriaError(f"criteria parameter {name!r} has no value")
        base, _, mod = name.partition(":")
        if "." in name:
            raise CriteriaError(f"chained parameters are not supported in criteria: {name!r}")
        if allowed is not None and not allowed(type_, base, mod or None):
            raise CriteriaError(f"filter {name!r} is not allowed on {type_} by this topic")
        lp = (local or {}).get(f"{type_}.{base}")
        clauses.append(_parse_local(lp, name, mod or None, raw) if lp is not None else _parse(type_, name, raw))
    return Criteria(type_, tuple(clauses), text)


def _parse(type_: str, name: str, raw: str) -> Clause:
    def unknown(n: str, _r: str, why: str) -> None:
        raise CriteriaError(f"unknown parameter {n!r}: {why}")

    try:
        clause = parse_clause(type_, name, raw, unknown)
    except FhirError as exc:
        raise CriteriaError(str(exc)) from None
    except ValueError as exc:
        raise CriteriaError(f"bad value for {name!r}: {exc}") from None
    assert clause is not None  # unknown() raised otherwise
    return clause


def _parse_local(p: SearchParam, name: str, mod: str | None, raw: str) -> Clause:
    if mod not in (None, "not"):
        raise CriteriaError(f"modifier :{mod} is not supported on {name!r}")
    try:
        values = tuple(parse_token(v) for v in split_escaped(raw, ","))
    except ValueError as exc:
        raise CriteriaError(f"bad value for {name!r}: {exc}") from None
    return Clause(p, mod, values, name, raw, negate=mod == "not")


# ---- evaluation ---------------------------------------------------------------------------

def _clause(c: Clause, res: IndexedResource) -> bool:
    p = c.param
    if p.name == "_id":
        hit = any(isinstance(v, TokenValue) and v.code == res.id for v in c.values)
        return hit != c.negate
    rows = res.by_param.get(p.key, ())
    if p.rows_of:  # patient: from the subject rows (fhir_server.search.shared_rows)
        rows = [r for r in res.by_param.get(p.rows_key, ()) if row_of(p, r)]
    if c.missing is not None:
        return (len(rows) == 0) == c.missing
    hit = any(_value(v, row) for v in c.values for row in rows)
    return hit != c.negate


def _value(v: Any, row: dict[str, Any]) -> bool:
    if isinstance(v, TokenValue):
        return _token(v, row)
    if isinstance(v, TextValue):
        return v.text in (row.get("text") or "")
    if isinstance(v, ReferenceValue):
        if v.url is not None:
            return row.get("url") == v.url
        same_type = v.target_type is None or row.get("target_type") == v.target_type
        return same_type and row.get("target_id") == v.target_id
    if isinstance(v, StringValue):
        if v.mode == "exact":
            return row.get("exact") == v.text
        value = row.get("value") or ""
        return v.text in value if v.mode == "contains" else value.startswith(v.text)
    if isinstance(v, DateValue):
        return _date(v, row["lo"], row["hi"])
    if isinstance(v, NumberValue):
        return _number(v, row["value"])
    if isinstance(v, QuantityValue):
        return _quantity(v, row)
    return False


def _token(v: TokenValue, row: dict[str, Any]) -> bool:
    if v.code is not None and row.get("code") != v.code:
        return False
    if v.no_system:
        return row.get("system") is None
    return v.system is None or row.get("system") == v.system


def _date(v: DateValue, lo: int, hi: int) -> bool:
    p = v.prefix
    if p == "eq":
        return lo >= v.lo and hi <= v.hi
    if p == "ne":
        return not (lo >= v.lo and hi <= v.hi)
    if p == "gt":
        return hi > v.hi
    if p == "lt":
        return lo < v.lo
    if p == "ge":
        return hi >= v.lo
    if p == "le":
        return lo <= v.hi
    if p == "sa":
        return lo > v.hi
    if p == "eb":
        return hi < v.lo
    return lo <= v.hi and hi >= v.lo  # ap


def _number(v: NumberValue, x: float) -> bool:
    p = v.prefix
    if p == "eq":
        return v.lo <= x < v.hi
    if p == "ne":
        return not v.lo <= x < v.hi
    if p in ("gt", "sa"):
        return x > v.value
    if p in ("lt", "eb"):
        return x < v.value
    if p == "ge":
        return x >= v.value
    if p == "le":
        return x <= v.value
    return v.lo <= x <= v.hi  # ap


def _quantity(v: QuantityValue, row: dict[str, Any]) -> bool:
    if v.canon:
        if row.get("canon_code") != v.code or row.get("canon_value") is None:
            return False
        return _number(v.number, row["canon_value"])
    if v.code is not None and row.get("code") != v.code:
        return False
    if v.system is not None and row.get("system") != v.system:
        return False
    return _number(v.number, row["value"])
