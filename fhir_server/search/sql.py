"""Compile a ``SearchQuery`` into SQLAlchemy Core statements for SQLite and PostgreSQL.

Every page statement yields ``rid, type, id, version, last_updated, body`` of current,
non-deleted resources (``resource`` joined to ``resource_version`` on ``vid``).

Paging under concurrent writes: the first page takes a *snapshot*, the highest
``resource.rid`` at that moment (``build_snapshot()``), and every page of the same search is
limited to ``rid <= snapshot`` (``SearchQuery.with_page(offset, snapshot)``, carried in links as
``_snapshot``). Resources created later get larger rids and never shift later pages. An
update keeps its rid, so an updated resource stays in place (or drops out if it no longer
matches); a delete in between shifts later pages by one. On PostgreSQL a rid below the
snapshot may commit after the snapshot was read (sequence order is not commit order); that
resource can then appear on a later page.

Each page statement uses ``LIMIT count + 1``: the extra row tells the caller a next page exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select, union_all

from fhir_server.errors import bad_request
from fhir_server.storage.schema import INDEX_TABLES, resource, resource_version

from .composite import UNDATED, composite_key, end_param
from .query import MAX_COUNT, SearchQuery, SortKey
from .query_parts import Include
from .shared_rows import param_rows
from .sql_stream import date_sorted, streaming_plan
from .sql_where import on_index, where_all
from .values import TokenValue

__all__ = ["build_count", "build_includes", "build_lastn", "build_select", "build_snapshot"]

R = resource
V = resource_version
_SORT_COLUMN = {"token": "code", "uri": "code", "string": "value", "number": "value",
                "quantity": "value", "reference": "target_id"}


# what a page of resources reads, whichever plan finds them
_PAGE_COLS = (R.c.rid, R.c.type, R.c.id, R.c.version, R.c.last_updated, V.c.body)


def _page_columns() -> Select[Any]:
    return (
        select(*_PAGE_COLS)
        .select_from(R.join(V, R.c.vid == V.c.vid))
        .where(R.c.deleted == false())
    )


def _conditions(q: SearchQuery) -> list[ColumnElement[bool]]:
    if any(on_index(c) for c in q.clauses) and not any(c.param.name == "_id" for c in q.clauses):
        # An index clause drives (``rid IN (SELECT rid FROM idx_...)``): the type is then only a
        # check on each matched row. Written so that no index can serve it (``type || ''``): SQLite,
        # without statistics, otherwise walked ix_resource_type_updated over every resource of the
        # type, probing the list for each (57 ms for code&_sort=-date at 32,000 Observations, O(N)).
        conds: list[ColumnElement[bool]] = [R.c.type.concat("") == q.resource_type]
    else:
        conds = [R.c.type == q.resource_type]
    conds += where_all(q.clauses, R, q.snapshot, q.series)
    return conds


def _sort_expr(k: SortKey) -> Any:
    p = k.param
    if p.name == "_id":
        return R.c.id
    if p.name == "_lastUpdated":
        return R.c.last_updated
    t = INDEX_TABLES[p.table]
    # Several values: ascending sorts on the lowest, descending on the highest (spec #sort).
    if p.type == "date":
        col = func.max(t.c.hi) if k.descending else func.min(t.c.lo)
    else:
        c = t.c[_SORT_COLUMN[p.type]]
        col = func.max(c) if k.descending else func.min(c)
    # the sort value is looked up by rid for each matched row: ``param_rows(..., by_rid=True)`` keeps
    # the (param, value) indexes out of it, else SQLite answers min(code) by walking ix_token_code
    # over every row of the parameter, for each candidate (over 1 s at 32,000 Observations)
    return select(col).where(t.c.rid == R.c.rid, param_rows(t, p, by_rid=True)).scalar_subquery()


def _order(q: SearchQuery) -> list[Any]:
    keys = []
    for k in q.sort:
        e = _sort_expr(k)
        keys.append((e.desc() if k.descending else e.asc()).nulls_last())
    keys.append(R.c.rid.asc())
    return keys


def build_snapshot() -> Select[Any]:
    """``max(resource.rid)``: the snapshot a first page records for the pages after it."""
    return select(func.coalesce(func.max(R.c.rid), 0))


def _streaming_select(q: SearchQuery) -> Select[Any] | None:
    plan = None if q.sort else streaming_plan(q.clauses, R, q.snapshot, q.series)
    if plan is None:
        return None
    t, conds, order = plan
    return (
        select(*_PAGE_COLS)
        .select_from(t.join(R, R.c.rid == t.c.rid).join(V, R.c.vid == V.c.vid))
        .where(R.c.deleted == false(), R.c.type == q.resource_type, *conds)
        .order_by(*order)
    )


def build_select(q: SearchQuery, *, index_order: bool = True) -> Select[Any]:
    """One page of matches, ordered per ``_sort`` then rid, ``LIMIT count+1 OFFSET offset``.

    Without ``_sort``, a single-key driving clause streams in its index's order (``sql_stream.py``);
    a lone ``_sort`` on a date parameter reads the page from that parameter's index in order.
    ``index_order=False``: the generic plan, which collects and sorts every match (the same page;
    tests and benchmarks compare the two).
    """
    stmt = _streaming_select(q) if index_order else None
    if stmt is None and index_order:
        sorted_page = _date_sorted_select(q)
        if sorted_page is not None:
            return sorted_page  # limited already
    if stmt is None:
        stmt = _page_columns().where(*_conditions(q)).order_by(*_order(q))
    return stmt.limit(q.count + 1).offset(q.offset)


def _date_sorted_select(q: SearchQuery) -> Select[Any] | None:
    plan = date_sorted(q, R)
    if plan is None:
        return None
    page, order = plan
    return (
        select(*_PAGE_COLS)
        .select_from(page.join(R, R.c.rid == page.c.rid).join(V, R.c.vid == V.c.vid))
        .order_by(*order)
    )


def build_count(q: SearchQuery) -> Select[Any]:
    """The number of matches (for ``total`` and ``_summary=count``), within the snapshot."""
    return select(func.count()).select_from(R).where(R.c.deleted == false(), *_conditions(q))


def _include(inc: Include, rids: Sequence[int]) -> Select[Any]:
    ref = INDEX_TABLES["reference"]
    tgt = R.alias("tgt")
    on = and_(tgt.c.type == ref.c.target_type, tgt.c.id == ref.c.target_id)
    conds = [ref.c.rid.in_(list(rids)), or_(*[param_rows(ref, p) for p in inc.params])]
    if inc.target_type is not None:
        conds.append(ref.c.target_type == inc.target_type)
    sub = select(tgt.c.rid).select_from(ref.join(tgt, on)).where(*conds)
    return _page_columns().where(R.c.rid.in_(sub)).order_by(R.c.rid)


def _revinclude(inc: Include, rids: Sequence[int]) -> Select[Any]:
    ref = INDEX_TABLES["reference"]
    m = R.alias("m")
    on = and_(m.c.type == ref.c.target_type, m.c.id == ref.c.target_id)
    sub = (
        select(ref.c.rid).select_from(ref.join(m, on))
        .where(m.c.rid.in_(list(rids)), or_(*[param_rows(ref, p) for p in inc.params]))
    )
    return _page_columns().where(R.c.type == inc.source_type, R.c.rid.in_(sub)).order_by(R.c.rid)


def build_includes(q: SearchQuery, rids: Sequence[int]) -> list[Select[Any]]:
    """One statement per ``_include`` and ``_revinclude`` of the page's matched ``rids``.

    The caller removes resources already on the page (an included resource is listed once,
    as ``match`` if it matched). Includes are not iterated (no ``:iterate``).
    """
    if not rids:
        return []
    return [_include(i, rids) for i in q.includes] + [_revinclude(i, rids) for i in q.revincludes]


# ---- Observation/$lastn ---------------------------------------------------------------------

def _token_rows(rid: Any, key: str, tokens: Sequence[TokenValue]) -> Select[Any]:
    t = INDEX_TABLES["token"].alias()
    alts = []
    for v in tokens:
        conds = [t.c.code == v.code] if v.code is not None else []
        if v.system is not None:
            conds.append(t.c.system == v.system)
        alts.append(and_(*conds))
    return select(t.c.rid).where(t.c.rid == rid, t.c.param == key, or_(*alts))


def _subject_rows(rid: Any, patient: tuple[str, str]) -> Select[Any]:
    r = INDEX_TABLES["reference"].alias()
    return select(r.c.rid).where(
        r.c.rid == rid, r.c.param == "Observation.subject",
        r.c.target_id == patient[1], r.c.target_type == patient[0],
    )


def _live_row(rid: Any) -> Select[Any]:
    # Deleted resources may keep index rows; they must not take a slot of the n latest.
    live = R.alias()
    return select(live.c.rid).where(live.c.rid == rid, live.c.deleted == false())


def _probe(rows: Select[Any]) -> ColumnElement[bool]:
    """A per-row point probe. PostgreSQL turns ``EXISTS`` into a semi-join and may then drive
    the query from the probed table (the patient's every observation: 100+ ms at 100k rows);
    a scalar subquery stays a probe of each candidate, so the date index keeps the lead."""
    return rows.limit(1).scalar_subquery().is_not(None)


def _series_param(patient: tuple[str, str], code: TokenValue) -> str | None:
    """The end-time row param of this patient's series of ``code``, when one is written."""
    if patient[0] != "Patient" or not code.system or not code.code:
        return None
    return end_param(composite_key(patient[1], code.system, code.code))


def _latest_of_code(
    patient: tuple[str, str], category: Sequence[TokenValue], code: TokenValue, n: int,
    series: Mapping[str, Sequence[str]],
) -> Select[Any]:
    d = INDEX_TABLES["date"].alias()
    key = _series_param(patient, code)
    params = series.get(key) if key is not None else None
    if params is not None and not params:  # series_member names none: no reading of this code
        return select(d.c.rid).where(false())
    if params:
        # The code's series' end-time rows (composite.py) in ix_date_lo: the newest n entries of
        # each, each checked live (and of the category); no other patient's or code's rows are
        # read. The newest n of their union are among them.
        tops = []
        for p in params:
            d = INDEX_TABLES["date"].alias()
            conds = [d.c.param == p, d.c.lo > UNDATED, _probe(_live_row(d.c.rid))]
            if category:
                conds.append(_probe(_token_rows(d.c.rid, "Observation.category", category)))
            tops.append(select(d.c.rid, d.c.lo).where(*conds).order_by(d.c.lo.desc(), d.c.rid.desc()).limit(n))
        if len(tops) == 1:
            return select(tops[0].subquery().c.rid)
        u = union_all(*[select(t.subquery()) for t in tops]).subquery()
        return select(select(u.c.rid).order_by(u.c.lo.desc(), u.c.rid.desc()).limit(n).subquery().c.rid)
    # Walk idx_date (param, lo) newest first and stop after n hits: the index gives the order,
    # and each candidate costs two or three point probes of (param, key, rid) indexes.
    conds = [d.c.param == "Observation.date", _probe(_live_row(d.c.rid)), _probe(_subject_rows(d.c.rid, patient)),
             _probe(_token_rows(d.c.rid, "Observation.code", [code]))]
    if category:
        conds.append(_probe(_token_rows(d.c.rid, "Observation.category", category)))
    inner = select(d.c.rid).where(*conds).order_by(d.c.lo.desc(), d.c.rid.desc()).limit(n)
    sub = inner.subquery()
    return select(sub.c.rid)


def _latest_of_every_code(
    patient: tuple[str, str], category: Sequence[TokenValue], n: int
) -> Select[Any]:
    # No codes given: rank every (system, code) of the patient's observations with a window,
    # driven from the patient's subject rows. Cost grows with the patient's observation count
    # (~25 ms for 10,000 on SQLite); passing codes takes the indexed path above.
    r = INDEX_TABLES["reference"].alias()
    t = INDEX_TABLES["token"].alias()
    d = INDEX_TABLES["date"].alias()
    # The date is a per-row probe, not a join: joined, PostgreSQL hashes the whole date index.
    lo = select(func.max(d.c.lo)).where(d.c.rid == r.c.rid, d.c.param == "Observation.date").scalar_subquery()
    joined = r.join(t, and_(t.c.rid == r.c.rid, t.c.param == "Observation.code",
                            func.coalesce(t.c.code, "") != ""))  # not an index condition: probe by rid
    conds = [r.c.param == "Observation.subject", r.c.target_id == patient[1],
             r.c.target_type == patient[0], _probe(_live_row(r.c.rid))]
    if category:
        conds.append(_probe(_token_rows(r.c.rid, "Observation.category", category)))
    rows = select(t.c.rid, t.c.system, t.c.code, lo.label("lo")).select_from(joined).where(*conds).subquery()
    rn = func.row_number().over(partition_by=(rows.c.system, rows.c.code),
                                order_by=(rows.c.lo.desc(), rows.c.rid.desc()))
    ranked = select(rows.c.rid, rn.label("rn")).where(rows.c.lo.is_not(None)).subquery()
    return select(ranked.c.rid).where(ranked.c.rn <= n)


def build_lastn(
    patient: tuple[str, str],
    category: Sequence[TokenValue],
    codes: Sequence[TokenValue],
    max_per_code: int,
    series: Mapping[str, Sequence[str]] | None = None,
) -> Select[Any]:
    """``Observation/$lastn``: the latest ``max_per_code`` Observations per code, newest first.

    ``patient`` is ``(type, id)`` of the subject. Each entry of ``codes`` is one group (a code
    with or without its system); with no codes, every (system, code) of the patient's
    observations is a group. Observations without an effective time are not ranked.
    ``series``: a code's coding series param (``end_param(composite_key(...))``) -> the series
    its readings are in (``composite.series_of``); a code without reads every observation of
    the date parameter newest first.
    https://hl7.org/fhir/R4B/observation-operation-lastn.html
    """
    if not category and not codes:
        raise bad_request("$lastn needs a category and/or a code", ["category"])
    if not 1 <= max_per_code <= MAX_COUNT:
        raise bad_request(f"max must be between 1 and {MAX_COUNT}", ["max"])
    if len(codes) > MAX_COUNT:
        raise bad_request(f"$lastn takes at most {MAX_COUNT} codes", ["code"])
    if codes:
        parts = [_latest_of_code(patient, category, c, max_per_code, series or {}) for c in codes]
        rids: Any = parts[0] if len(parts) == 1 else union_all(*parts)
    else:
        rids = _latest_of_every_code(patient, category, max_per_code)
    d = INDEX_TABLES["date"]
    newest = (
        select(func.max(d.c.lo)).where(d.c.rid == R.c.rid, d.c.param == "Observation.date")
        .scalar_subquery()
    )
    return (
        _page_columns()
        .where(R.c.rid.in_(rids))  # rids come from Observation-only index rows; a type filter here
        # would make SQLite scan every Observation and test membership (O(N) per call)
        .order_by(newest.desc(), R.c.rid.desc())
    )
