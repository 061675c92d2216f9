"""Run searches and ``$lastn`` and assemble searchset Bundles (https://hl7.org/fhir/R4B/search.html).

Paging: the first page pins a snapshot (the highest ``rid`` at that moment) that every later
page carries, so resources created while a client pages never shift its pages.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import func, select

from fhir_server.errors import bad_request
from fhir_server.search.query import parse_search
from fhir_server.storage import schema as t

from .bundles import bundle, search_entry, url
from .request import FhirRequest


async def match_ids(db: Any, type_: str, query: str, *, limit: int) -> list[str]:
    """Ids of the resources matching a conditional-operation query (strict parameters)."""
    from fhir_server.search.sql import build_select

    params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if not params:
        raise bad_request("A conditional operation needs search parameters")
    q = replace(parse_search(type_, params, strict=True), count=limit, offset=0)
    rows = await db.fetch(build_select(q))
    return [r[2] for r in rows][:limit]


async def _snapshot(db: Any) -> int:
    return int((await db.fetch(select(func.max(t.resource.c.rid)))).scalar() or 0)


async def search(db: Any, ctx: Any, req: FhirRequest, type_: str,
                 params: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    from fhir_server.search.sql import build_count, build_includes, build_select

    strict = req.prefer("handling") == "strict"
    q = parse_search(type_, list(params), strict=strict)
    if q.snapshot is None:
        q = q.with_page(q.offset, await _snapshot(db))
    base = ctx.base_url
    if q.summary == "count":
        total = int((await db.fetch(build_count(q))).scalar() or 0)
        return bundle("searchset", [], total=total, links=[("self", url(base, type_, q.to_params()))])
    rows = list(await db.fetch(build_select(q)))
    more = len(rows) > q.count
    rows = rows[: q.count]
    entries = [search_entry(base, r[1], r[2], r[5]) for r in rows]
    if rows and (q.includes or q.revincludes):
        seen = {(r[1], r[2]) for r in rows}
        for stmt in build_includes(q, [r[0] for r in rows]):
            for r in await db.fetch(stmt):
                if (r[1], r[2]) not in seen:
                    seen.add((r[1], r[2]))
                    entries.append(search_entry(base, r[1], r[2], r[5], "include"))
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


def _tokens(values: list[str]) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = []
    for v in values:
        for item in v.split(","):
            if "|" in item:
                s, _, c = item.partition("|")
                out.append((s or None, c))
            elif item:
                out.append((None, item))
    return out


async def lastn(db: Any, ctx: Any, req: FhirRequest) -> dict[str, Any]:
    """``Observation/$lastn``: the latest ``max`` Observations per code for one patient."""
    from fhir_server.search.sql import build_lastn

    p: dict[str, list[str]] = {}
    for k, v in req.params:
        p.setdefault(k, []).append(v)
    subject = (p.get("patient") or p.get("subject") or [None])[0]
    if not subject:
        raise bad_request("$lastn needs patient or subject", ["patient"])
    if not p.get("category") and not p.get("code"):
        raise bad_request("$lastn needs category and/or code", ["category"])
    ref = subject.split("/")
    patient = (ref[-2], ref[-1]) if len(ref) >= 2 else ("Patient", ref[0])
    raw_max = (p.get("max") or ["1"])[0]
    if not raw_max.isdigit() or int(raw_max) < 1:
        raise bad_request("max must be a positive integer", ["max"])
    stmt = build_lastn(patient, _tokens(p.get("category", [])), _tokens(p.get("code", [])), min(int(raw_max), 100))
    rows = await db.fetch(stmt)
    entries = [search_entry(ctx.base_url, r[1], r[2], r[5]) for r in rows]
    self_params = [(k, v) for k, vs in p.items() for v in vs]
    return bundle("searchset", entries, total=len(entries),
                  links=[("self", url(ctx.base_url, "Observation/$lastn", self_params))])
