"""A streaming plan for pages in index order: join the driving index instead of ``rid IN (...)``.

``rid IN (subquery)`` makes the database collect every match before it can return the
first page: ~0.4 s for ``status=final`` over 1,000,000 Observations on SQLite. When the
driving clause is a single equality key of an index ordered ``(param, key, rid)``
(``ix_token_code``, ``ix_reference_target``), the index already yields matches in rid order,
so joining it to ``resource`` and ordering by its rid lets ``LIMIT`` stop after one page,
whether the key matches ten rows or a million. One patient's one code streams from its
series' end-time rows (``composite.py``) in their index order, time then rid: a page is the
series' next readings, not a sort of the whole series.

A resource can have two index rows with the same key (the same code in two codings); the
``NOT EXISTS`` on a lower ``pk`` keeps only its first row, so each resource appears once
(a series has one end-time row per Observation). Used only without ``_sort``; everything
else takes ``where_all``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, exists, not_, select, true
from sqlalchemy.sql.expression import FromClause

from fhir_server.storage.schema import INDEX_TABLES

from .composite import composite_keys
from .query_parts import Clause
from .sql_where import clause_condition, index_rows, on_index, resource_columns, selectivity
from .values import DateValue, ReferenceValue, TokenValue

__all__ = ["StreamPlan", "streaming_plan"]

# (the driving index alias, every condition of the page, the page order)
StreamPlan = tuple[FromClause, list[ColumnElement[bool]], list[ColumnElement[Any]]]


def _key_column(c: Clause) -> str | None:
    """The index key column when ``c`` is one equality key, else None."""
    if c.chain or c.missing is not None or c.negate or len(c.values) != 1:
        return None
    v = c.values[0]
    if c.param.type in ("token", "uri") and c.modifier is None:
        return "code" if isinstance(v, TokenValue) and v.code is not None else None
    if c.param.type == "reference" and (c.modifier is None or c.modifier[:1].isupper()):
        return "target_id" if isinstance(v, ReferenceValue) and v.target_id else None
    return None


def _first_row_only(t: FromClause, key: str, match: ColumnElement[bool],
                    earlier: FromClause) -> ColumnElement[bool]:
    return not_(exists(select(earlier.c.rid).where(
        earlier.c.param == t.c.param, earlier.c[key] == t.c[key], earlier.c.rid == t.c.rid,
        earlier.c.pk < t.c.pk, match,
    )))


# (index alias, its conditions, the clauses left to probe, the first-row-only condition, the order)
_Driver = tuple[FromClause, list[ColumnElement[bool]], list[Clause], ColumnElement[bool], list[ColumnElement[Any]]]


def _composite(indexed: list[Clause], series: Sequence[str] | None) -> _Driver | None:
    combo = composite_keys(indexed)
    if combo is None or series is None or len(series) != 1:
        return None
    # the series' end-time rows: one per Observation (undated ones first), in ix_date_lo's order
    t = INDEX_TABLES["date"].alias()
    return t, [t.c.param == series[0]], combo[1], true(), [t.c.lo, t.c.rid]


def _end_bound(c: Clause, end: ColumnElement[object]) -> ColumnElement[bool] | None:
    """A condition on a series' end-time row that every match of date clause ``c`` meets.

    A match has a date row ending at or after the value's start (ge, eq, ap) or after its end
    (gt, sa), and the end-time row holds the latest end, so it meets the same bound.
    """
    if (c.param.name != "date" or c.param.type != "date" or c.modifier is not None or c.chain
            or c.missing is not None or c.negate or len(c.values) != 1):
        return None
    v = c.values[0]
    if not isinstance(v, DateValue):
        return None
    if v.prefix in ("ge", "eq", "ap"):
        return end >= v.lo
    if v.prefix in ("gt", "sa"):
        return end > v.hi
    return None


def _composite_by_date(indexed: list[Clause], series: Sequence[str] | None) -> _Driver | None:
    """patient + code + a lower date bound: the series' end-time rows from that bound on.

    Only the readings that can match are visited (an hour of one series, not all of it);
    they come in time order, so the page is sorted by rid afterwards (a few dozen rows).
    The date clause itself is still checked exactly, on the Observation's own date rows.
    """
    combo = composite_keys(indexed)
    if combo is None or series is None or len(series) != 1:
        return None
    param = series[0]
    t = INDEX_TABLES["date"].alias()
    bound = next((b for c in combo[1] if (b := _end_bound(c, t.c.lo)) is not None), None)
    if bound is None:
        return None
    # an hour of the series: few enough rows to page in rid order
    return t, [t.c.param == param, bound], combo[1], true(), [t.c.rid]


def streaming_plan(clauses: tuple[Clause, ...], res: FromClause,
                   snapshot: int | None, series: Sequence[str] | None = None) -> StreamPlan | None:
    """The driving index and all conditions, or None when no clause can stream. ``series``:
    ``SearchQuery.series`` (one patient's one code streams only from one series)."""
    ordered = sorted(clauses, key=selectivity)
    indexed = [c for c in ordered if on_index(c)]
    if not indexed or any(c.param.name == "_id" for c in ordered):
        return None
    plan = _composite_by_date(indexed, series) or _composite(indexed, series)
    if plan is None:
        first = indexed[0]
        key = _key_column(first)
        if key is None:
            return None
        t, match = index_rows(first)
        t2, match2 = index_rows(first, INDEX_TABLES[first.param.table].alias())
        plan = t, [match], indexed[1:], _first_row_only(t, key, match2, t2), [t.c.rid]
    t, conds, rest, first_row, order = plan
    if snapshot is not None:
        conds.append(t.c.rid <= snapshot)
    conds += [clause_condition(c, res, drive=False, rid=t.c.rid) for c in rest]
    conds += [resource_columns(c, res) for c in ordered if not on_index(c)]
    # last: SQLite evaluates terms in order, and most candidates fail a probe before this
    conds.append(first_row)
    return t, conds, order
