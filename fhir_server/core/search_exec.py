"""Run searches and ``$lastn`` and assemble searchset Bundles (https://hl7.org/fhir/R4B/search.html).

Paging: the first page pins a snapshot (the highest ``rid`` at that moment) that every later
page carries, so resources created while a client pages never shift its pages.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.errors import bad_request
from fhir_server.search.composite import composite_key, composite_keys, end_param, patient_series_bounds, series_of
from fhir_server.search.query import SearchQuery, parse_search
from fhir_server.search.registry import search_params
from fhir_server.search.sql import build_snapshot
from fhir_server.search.values import DateValue, TokenValue, parse_token, split_escaped

from . import fastread
from .bundles import bundle, search_entry, url
from .request import FhirRequest
from .subsetting import applies, subset


async def match_ids(db: Any, type_: str, query: str, *, limit: int) -> list[str]:
    """Ids of the resources matching a conditional-operation query (strict parameters)."""
    from fhir_server.search.sql import build_select

    params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if not params:
        raise bad_request("A conditional operation needs search parameters")
    q = await with_series(db, replace(parse_search(type_, params, strict=True), count=limit, offset=0))
    rows = await db.fetch(build_select(q))
    return [r[2] for r in rows][:limit]


async def series_members(db: Any, params: list[str]) -> list[tuple[str, str]]:
    """The ``series_member`` rows of coding series ``params`` (``composite.series_of``), read
    by ``db``: the store, or a write transaction (which sees its own rows)."""
    stmt = (fastread.members_sql(len(params)), params)
    if fastread.usable(db):
        rows = (await fastread.fetch_many(db, [stmt]))[0]
    else:
        rows = await db.rows(*stmt)
    return [(r[0], r[1]) for r in rows]


async def with_series(db: Any, q: SearchQuery) -> SearchQuery:
    """``q`` with ``series`` read when it has one patient and one code clause the series rows
    answer (``composite.composite_keys``): the plans read those series, each an index range."""
    combo = composite_keys(list(q.clauses)) if q.resource_type == "Observation" else None
    if combo is None:
        return q
    members = await series_members(db, [end_param(k) for k in combo[0]])
    return replace(q, series=tuple(series_of(combo[0], members)))


async def _snapshot(db: Any) -> int:
    return int((await db.fetch(build_snapshot())).scalar() or 0)


def _localise(type_: str, params: tuple[tuple[str, str], ...], base: str) -> list[tuple[str, str]]:
    """Absolute references to this server (``[base]/Patient/1``) searched as ``Patient/1``.

    The index keeps a local reference as type and id only, so an absolute URL naming our own
    base must be made relative to match it (https://hl7.org/fhir/R4B/search.html#reference).
    """
    prefix = base.rstrip("/") + "/"
    if not base:
        return list(params)
    known = search_params(type_)
    out = []
    for name, raw in params:
        p = known.get(name.partition(".")[0].partition(":")[0])
        if p is not None and p.type == "reference" and "." not in name and prefix in raw:
            raw = ",".join(v.removeprefix(prefix) for v in split_escaped(raw, ","))
        out.append((name, raw))
    return out


async def search(db: Any, ctx: Any, req: FhirRequest, type_: str,
                 params: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    from fhir_server.search.sql import build_count, build_includes, build_select

    strict = req.prefer("handling") == "strict"
    base = ctx.base_url
    q = parse_search(type_, _localise(type_, params, base), strict=strict)
    fast = _series_search(db, q)
    if fast is not None:
        snap, rows = await _run_series_search(db, q, *fast)
        q = q.with_page(q.offset, snap)
    else:
        q = await with_series(db, q)
        if q.snapshot is None:
            q = q.with_page(q.offset, await _snapshot(db))
        if q.summary == "count" or q.count == 0:  # _count=0: the total only (search.html#count)
            n = int((await db.fetch(build_count(q))).scalar() or 0)
            return bundle("searchset", [], total=n, links=[("self", url(base, type_, q.to_params()))])
        rows = list(await db.fetch(build_select(q)))
    more = len(rows) > q.count
    rows = rows[: q.count]
    cut = applies(q.summary, q.elements)
    entries = [search_entry(base, r[1], r[2], subset(r[5], r[1], q.summary, q.elements) if cut else r[5])
               for r in rows]
    if rows and (q.includes or q.revincludes):
        seen = {(r[1], r[2]) for r in rows}
        for stmt in build_includes(q, [r[0] for r in rows]):
            for r in await db.fetch(stmt):
                if (r[1], r[2]) not in seen:
                    seen.add((r[1], r[2]))
                    body = subset(r[5], r[1], q.summary, q.elements) if cut else r[5]
                    entries.append(search_entry(base, r[1], r[2], body, "include"))
    total = None
    if q.total == "accurate" or (q.total != "none" and not more and q.offset == 0):
        total = len(rows) + q.offset if not more else int((await db.fetch(build_count(q))).scalar() or 0)
    links = [("self", url(base, type_, q.to_params()))]
    if more:
        links.append(("next", url(base, type_, q.with_page(q.offset + q.count, q.snapshot).to_params())))
    if q.offset > 0:
        links.append(("previous", url(base, type_, q.with_page(max(0, q.offset - q.count), q.snapshot).to_params())))
    if q.ignored:
        entries.append(_ignored_outcome(q.ignored))
    return bundle("searchset", entries, total=total, links=links)


def _series_search(db: Any, q: Any) -> tuple[str, DateValue] | None:
    """``(coding key, date value)`` when ``q`` is one patient's one code from a date on.

    That is the dashboard's search (``patient&code&date=ge``): it runs as fixed SQL
    (``fastread.series_search_sql``), the plan ``sql_stream`` builds for one series.
    """
    if (not fastread.usable(db) or q.resource_type != "Observation" or q.sort or q.includes
            or q.revincludes or q.summary or q.elements or q.total == "accurate" or q.count == 0):
        return None
    combo = composite_keys(list(q.clauses))
    if combo is None or len(combo[0]) != 1 or len(combo[1]) != 1:
        return None
    key, (c,) = combo[0][0], combo[1]
    if (c.param.key != "Observation.date" or c.modifier is not None or c.chain
            or c.missing is not None or c.negate or len(c.values) != 1):
        return None
    v = c.values[0]
    if not isinstance(v, DateValue) or v.prefix not in ("ge", "gt"):
        return None
    return key, v


async def _run_series_search(db: Any, q: Any, key: str, v: DateValue) -> tuple[int, list[Any]]:
    bound = v.lo if v.prefix == "ge" else v.hi
    match = (v.hi, v.lo) if v.prefix == "ge" else (v.hi,)
    stmts: list[Any] = [(fastread.SNAPSHOT_SQL, ())] if q.snapshot is None else []
    stmts.append((fastread.members_sql(1), [end_param(key)]))

    def page(out: list[list[Any]]) -> fastread.Stmt:
        snap = int(out[0][0][0] or 0) if q.snapshot is None else q.snapshot
        series = series_of([key], out[-1])
        return (fastread.series_search_sql(v.prefix, len(series)),
                (*series, bound, snap, False, *match, q.count + 1, q.offset))

    stmts.append(page)
    res = await fastread.fetch_many(db, stmts)
    snapshot = int(res[0][0][0] or 0) if q.snapshot is None else q.snapshot
    return snapshot, res[-1]


def _ignored_outcome(ignored: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    names = ", ".join(sorted({k for k, _ in ignored}))
    return {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "not-supported",
                       "diagnostics": f"Unknown search parameters ignored: {names}"}],
        },
        "search": {"mode": "outcome"},
    }


def _tokens(values: list[str], name: str) -> list[TokenValue]:
    """Comma-separated ``[system|]code`` alternatives of every repeat, as ``TokenValue``s."""
    try:
        return [parse_token(v) for raw in values for v in split_escaped(raw, ",") if v]
    except ValueError as exc:
        raise bad_request(f"Bad value for {name}: {exc}", [name]) from None


LASTN_PARAMS = ("patient", "subject", "category", "code", "max")
LASTN_MAX = 100  # per code; with at most MAX_COUNT codes this bounds one response


def _lastn_series(db: Any, patient: tuple[str, str], category: list[TokenValue],
                  codes: list[TokenValue]) -> str | None:
    """The coding key of one patient's one code (the dashboard's ``$lastn``), else None."""
    if not fastread.usable(db) or category or len(codes) != 1 or patient[0] != "Patient":
        return None
    c = codes[0]
    return composite_key(patient[1], c.system, c.code) if c.system and c.code else None


async def _lastn_of_code(db: Any, key: str, n: int) -> list[Any]:
    """The newest ``n`` of the union of the code's series, in one read."""
    def latest(out: list[list[Any]]) -> fastread.Stmt:
        return fastread.lastn_of_code(series_of([key], out[0]), n)

    return (await fastread.fetch_many(db, [(fastread.members_sql(1), [end_param(key)]), latest]))[1]


LASTN_SERIES_MAX = 200  # one union term a series; beyond this the patient-wide plan is cheaper


async def _every_series(db: Any, patient: tuple[str, str], category: list[TokenValue],
                        codes: list[TokenValue], n: int) -> list[Any] | None:
    """With no codes: ``$lastn`` from the patient's series, else None.

    Every coded Observation of a Patient with a time has one end-time row, in the series of its
    whole code (``composite.py``): one seek a series instead of a pass over every observation
    of the patient. ``$lastn`` groups by coding, so each coding keeps the newest ``n`` of the
    union of the series ``series_member`` names for it; those are among the newest ``n`` of
    each of them, read per series.
    """
    if codes or patient[0] != "Patient" or not fastread.usable(db) or not await fastread.bytewise_text(db):
        return None
    lo, hi = patient_series_bounds(patient[1])
    walked, members = await fastread.fetch_many(
        db, [(fastread.SERIES_OF_PATIENT_SQL, (lo, hi, hi)), (fastread.MEMBERS_OF_PATIENT_SQL, (lo, hi))])
    series = [r[0] for r in walked]
    if len(series) > LASTN_SERIES_MAX:
        return None
    if not series:
        return []
    cat = [(c.system, c.code) for c in category]
    if all(k == s for k, s in members):  # every series is one coding's: each is a group
        return (await fastread.fetch_many(db, [fastread.lastn_of_series(series, cat, n)]))[0]

    def page(out: list[list[Any]]) -> fastread.Stmt:
        return fastread.page_of(_newest_by_coding(series, members, out[0], n))

    return (await fastread.fetch_many(db, [fastread.tops_of_series(series, cat, n), page]))[1]


def _newest_by_coding(series: list[str], members: list[Any], tops: list[Any], n: int) -> list[int]:
    """The rids each coding (a ``series_member`` key) keeps: the newest ``n`` of the tops
    (``(rid, end, series index)`` rows) of the series it is in."""
    by_series: dict[str, list[tuple[int, int]]] = {}
    for rid, end, i in tops:
        by_series.setdefault(series[i], []).append((end, rid))
    groups: dict[str, list[str]] = {}
    for pkey, set_param in members:
        groups.setdefault(pkey, []).append(set_param)
    named = {s for _, s in members}
    for p in series:  # a series no row names (written around series_member): its coding's own
        if p not in named:
            groups.setdefault(p, []).append(p)
    keep: set[int] = set()
    for params in groups.values():
        readings = sorted((r for p in params for r in by_series.get(p, ())), reverse=True)
        keep.update(rid for _, rid in readings[:n])
    return sorted(keep)


async def lastn(db: Any, ctx: Any, req: FhirRequest) -> dict[str, Any]:
    """``Observation/$lastn``: the latest ``max`` Observations per code for one patient.

    https://hl7.org/fhir/R4B/observation-operation-lastn.html. Other parameters are ignored,
    or refused with ``Prefer: handling=strict``. ``max`` is capped at ``LASTN_MAX``.
    """
    from fhir_server.search.sql import build_lastn

    p: dict[str, list[str]] = {}
    for k, v in req.params:
        if k not in LASTN_PARAMS:
            if req.prefer("handling") == "strict":
                raise bad_request(f"Unknown or unsupported $lastn parameter {k!r}", [k])
            continue
        p.setdefault(k, []).append(v)
    subject = (p.get("patient") or p.get("subject") or [""])[0]
    if not subject:
        raise bad_request("$lastn needs patient or subject", ["patient"])
    if not p.get("category") and not p.get("code"):
        raise bad_request("$lastn needs category and/or code", ["category"])
    ref = subject.removeprefix(ctx.base_url.rstrip("/") + "/").split("/")
    if len(ref) > 2 or not all(ref):
        raise bad_request(f"$lastn patient must be an id or Type/id, got {subject!r}", ["patient"])
    patient = (ref[0], ref[1]) if len(ref) == 2 else ("Patient", ref[0])
    raw_max = (p.get("max") or ["1"])[0]
    if not raw_max.isdigit() or int(raw_max) < 1:
        raise bad_request("max must be a positive integer", ["max"])
    category, codes, n = _tokens(p.get("category", []), "category"), _tokens(p.get("code", []), "code"), \
        min(int(raw_max), LASTN_MAX)
    key = _lastn_series(db, patient, category, codes)
    if key is not None:
        rows: Any = await _lastn_of_code(db, key, n)
    elif (every := await _every_series(db, patient, category, codes, n)) is not None:
        rows = every
    else:
        keys = [composite_key(patient[1], c.system, c.code) for c in codes
                if patient[0] == "Patient" and c.system and c.code]
        members = await series_members(db, [end_param(k) for k in keys]) if keys else []
        series = {end_param(k): series_of([k], members) for k in keys}
        rows = await db.fetch(build_lastn(patient, category, codes, n, series))
    entries = [search_entry(ctx.base_url, r[1], r[2], r[5]) for r in rows]
    self_params = [(k, v) for k, vs in p.items() for v in vs]
    return bundle("searchset", entries, total=len(entries),
                  links=[("self", url(ctx.base_url, "Observation/$lastn", self_params))])
