"""Search clauses as portable SQLAlchemy Core conditions on the ``resource`` table.

Every clause becomes a condition on ``resource.rid`` through one ``idx_*`` table whose
``param`` column is ``"<Type>.<name>"``. Matching rules (https://hl7.org/fhir/R4B/search.html):

- date: the value's range ``[ps, pe]`` against the indexed ``[lo, hi]``: eq = contained,
  gt ``hi > pe``, lt ``lo < ps``, ge ``hi > pe or lo >= ps``, le ``lo < ps or hi <= pe``,
  sa ``lo > pe``, eb ``hi < ps``, ap = overlap with the widened range, ne = not eq.
- number/quantity: eq/ne use the implicit precision range ``[lo, hi)``; gt lt ge le compare the
  value; sa/eb as gt/lt; ap within ``[lo, hi]``.
- string: start-of-string (default) or substring on the normalised column, ``:exact`` on
  ``exact``; LIKE patterns are escaped so ``%`` and ``_`` in values are literal.

Only standard SQL is used (IN/EXISTS subqueries, LIKE ... ESCAPE), so the same statements run
on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    false,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.sql.expression import FromClause

from fhir_server.storage.schema import INDEX_TABLES, resource

from .composite import composite_keys
from .query_parts import Clause
from .shared_rows import param_rows
from .values import (
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TextValue,
    TokenValue,
    Value,
)

__all__ = [
    "clause_condition", "date_match", "index_rows", "number_match", "on_index",
    "resource_columns", "selectivity", "where_all",
]

_LOW_CARDINALITY = frozenset({"status", "category", "gender", "active", "class", "type", "action",
                              "outcome", "payload"})


def selectivity(c: Clause) -> int:
    """A rough rank (lower = fewer matches) used to pick the clause that drives the plan."""
    p = c.param
    if c.missing is not None or c.negate:
        return 90
    if p.name == "_id":
        return 0
    if c.chain:
        return 40
    if p.type == "reference":
        return 10
    if p.type in ("token", "uri"):
        return 50 if p.name in _LOW_CARDINALITY else 20
    if p.type == "string":
        return 25 if c.modifier != "contains" else 60
    if p.type == "date" or p.name == "_lastUpdated":
        return 30
    return 45


def _like(text: str, lead: bool) -> str:
    esc = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return ("%" if lead else "") + esc + "%"


def _token(t: FromClause, v: Value) -> ColumnElement[bool]:
    if isinstance(v, TextValue):
        return t.c.text.like(_like(v.text, True), escape="\\")
    assert isinstance(v, TokenValue)
    conds = []
    if v.code is not None:
        conds.append(t.c.code == v.code)
    if v.no_system:
        conds.append(t.c.system.is_(None))
    elif v.system is not None:
        conds.append(t.c.system == v.system)
    return and_(*conds)


def _string(t: FromClause, v: Value) -> ColumnElement[bool]:
    assert isinstance(v, StringValue)
    if v.mode == "exact":
        return t.c.exact == v.text
    return t.c.value.like(_like(v.text, v.mode == "contains"), escape="\\")


def date_match(lo: Any, hi: Any, v: DateValue) -> ColumnElement[bool]:
    """The condition for a target range ``[lo, hi]`` (columns) against a date value."""
    ps, pe, p = v.lo, v.hi, v.prefix
    if p in ("eq", "ne"):
        eq = and_(lo >= ps, hi <= pe)
        return eq if p == "eq" else not_(eq)
    if p == "gt":
        return hi > pe  # type: ignore[no-any-return]
    if p == "lt":
        return lo < ps  # type: ignore[no-any-return]
    if p == "ge":
        return or_(hi > pe, lo >= ps)
    if p == "le":
        return or_(lo < ps, hi <= pe)
    if p == "sa":
        return lo > pe  # type: ignore[no-any-return]
    if p == "eb":
        return hi < ps  # type: ignore[no-any-return]
    return and_(lo <= pe, hi >= ps)  # ap: overlap with the widened range


def _date(t: FromClause, v: Value) -> ColumnElement[bool]:
    assert isinstance(v, DateValue)
    return date_match(t.c.lo, t.c.hi, v)


def number_match(col: Any, n: NumberValue) -> ColumnElement[bool]:
    p = n.prefix
    if p in ("eq", "ne"):
        eq = and_(col >= n.lo, col < n.hi)
        return eq if p == "eq" else not_(eq)
    if p == "ap":
        return and_(col >= n.lo, col <= n.hi)
    ops: dict[str, ColumnElement[bool]] = {
        "gt": col > n.value, "sa": col > n.value, "lt": col < n.value, "eb": col < n.value,
        "ge": col >= n.value, "le": col <= n.value,
    }
    return ops[p]


def _number(t: FromClause, v: Value) -> ColumnElement[bool]:
    assert isinstance(v, NumberValue)
    return number_match(t.c.value, v)


def _quantity(t: FromClause, v: Value) -> ColumnElement[bool]:
    assert isinstance(v, QuantityValue)
    if v.canon:
        return and_(t.c.canon_code == v.code, number_match(t.c.canon_value, v.number))
    conds = [number_match(t.c.value, v.number)]
    if v.code is not None:
        conds.append(t.c.code == v.code)
    if v.system is not None:
        conds.append(t.c.system == v.system)
    return and_(*conds)


def _reference(t: FromClause, v: Value) -> ColumnElement[bool]:
    assert isinstance(v, ReferenceValue)
    if v.url is not None:
        return t.c.url == v.url
    conds = [t.c.target_id == v.target_id]
    if v.target_type is not None:
        conds.append(t.c.target_type == v.target_type)
    return and_(*conds)


_MATCH = {"token": _token, "uri": _token, "string": _string, "date": _date,
          "number": _number, "quantity": _quantity, "reference": _reference}


def index_rows(c: Clause, t: FromClause | None = None) -> tuple[FromClause, ColumnElement[bool]]:
    """The index table (a fresh alias unless ``t`` is given) and the rows matching ``c``."""
    # Always an alias: two clauses on one table must not correlate with each other.
    t = INDEX_TABLES[c.param.table].alias() if t is None else t
    match = _MATCH[c.param.type]
    values = [match(t, v) for v in c.values]
    cond = values[0] if len(values) == 1 else or_(*values)
    if c.modifier and c.param.type == "reference" and c.modifier[:1].isupper():
        cond = and_(cond, t.c.target_type == c.modifier)
    return t, and_(param_rows(t, c.param), cond)


def resource_columns(c: Clause, res: FromClause) -> ColumnElement[bool]:
    if c.param.name == "_id":
        ids = [v.code for v in c.values if isinstance(v, TokenValue)]
        return res.c.id.in_(ids)
    col = res.c.last_updated
    return or_(*[date_match(col, col, v) for v in c.values if isinstance(v, DateValue)])


def _chain(c: Clause, rid: Any) -> ColumnElement[bool]:
    ref = INDEX_TABLES["reference"].alias()
    alts = []
    for ttype, inner in c.chain:
        tgt = resource.alias()
        sub = (
            select(ref.c.rid)
            .select_from(ref.join(tgt, and_(tgt.c.type == ref.c.target_type,
                                            tgt.c.id == ref.c.target_id)))
            .where(param_rows(ref, c.param), ref.c.target_type == ttype,
                   tgt.c.deleted == false(), clause_condition(inner, tgt, drive=True))
        )
        alts.append(rid.in_(sub))
    return or_(*alts) if alts else false()


def on_index(c: Clause) -> bool:
    return c.param.name not in ("_id", "_lastUpdated")


def clause_condition(c: Clause, res: FromClause, *, drive: bool, rid: Any = None) -> ColumnElement[bool]:
    """The condition of ``c`` on the resource row ``res`` (or on ``rid``, a rid column).

    ``drive``: written as ``rid IN (subquery)``, which the planner can use as the outer loop;
    otherwise as a correlated ``EXISTS`` probed per candidate row through the
    ``(param, key, rid)`` indexes.
    """
    rid = res.c.rid if rid is None else rid
    if not on_index(c):
        return resource_columns(c, res)
    if c.chain:
        return _chain(c, rid)
    if c.missing is not None:
        m = INDEX_TABLES[c.param.table].alias()
        has = exists(select(true()).where(m.c.rid == rid, param_rows(m, c.param)))
        return not_(has) if c.missing else has
    t, cond = index_rows(c)
    if c.negate:
        return rid.not_in(select(t.c.rid).where(cond))  # type: ignore[no-any-return]
    if drive:
        return rid.in_(select(t.c.rid).where(cond))  # type: ignore[no-any-return]
    return exists(select(true()).where(t.c.rid == rid, cond))


def where_all(
    clauses: tuple[Clause, ...], res: FromClause, snapshot: int | None = None, series: Sequence[str] | None = None,
) -> list[ColumnElement[bool]]:
    """All clauses AND-ed, as conditions on ``res``.

    The most selective index clause drives: ``res.rid IN (SELECT rid FROM idx_x WHERE ...)``
    with every other index clause probed inside that subquery, on the index row's rid, so the
    resource row is read only for real matches. ``_id``/``_lastUpdated`` (resource columns)
    and the snapshot bound stay on ``res``.
    """
    ordered = sorted(clauses, key=selectivity)
    outer = [resource_columns(c, res) for c in ordered if not on_index(c)]
    indexed = [c for c in ordered if on_index(c)]
    if snapshot is not None:
        outer.append(res.c.rid <= snapshot)
    if not indexed:
        return outer
    if any(c.param.name == "_id" for c in ordered):
        # the ids pick a handful of rows through uq(type, id); everything else is a probe
        return outer + [clause_condition(c, res, drive=False) for c in indexed]
    if series is not None and (combo := composite_keys(indexed)) is not None:
        # the series' end-time rows: one per Observation, undated ones included
        d = INDEX_TABLES["date"].alias()
        cond = d.c.param == series[0] if len(series) == 1 else d.c.param.in_(series)
        return [*outer, _driven(d, cond, combo[1], res, snapshot)]
    first = indexed[0]
    if first.chain or first.missing is not None or first.negate:
        return outer + [clause_condition(c, res, drive=i == 0) for i, c in enumerate(indexed)]
    t, cond = index_rows(first)
    return [*outer, _driven(t, cond, indexed[1:], res, snapshot)]


def _driven(t: FromClause, cond: ColumnElement[bool], rest: list[Clause], res: FromClause,
            snapshot: int | None) -> ColumnElement[bool]:
    """``res.rid IN (rows of t matching cond, with the other clauses probed on t.rid)``."""
    probes = [clause_condition(c, res, drive=False, rid=t.c.rid) for c in rest]
    if snapshot is not None:
        probes.append(t.c.rid <= snapshot)
    return res.c.rid.in_(select(t.c.rid).where(cond, *probes))
