"""Flush queued writes into one database transaction with batched Core statements.

One flush costs a handful of statements whatever the number of resources: look up the
current rows, insert new logical rows, insert versions, point ``resource`` at them,
replace the index rows of the final versions, and append the change log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir_server.errors import VersionConflict

from . import schema as t
from .fhirjson import dumps
from .types import PendingWrite, Written, us_to_instant

Indexer = Callable[[str, Mapping[str, Any]], Mapping[str, Sequence[Mapping[str, Any]]]]
_CHUNK = 400


class _Current:
    __slots__ = ("rid", "version", "deleted", "existed")

    def __init__(self, rid: int, version: int, deleted: bool, existed: bool) -> None:
        self.rid, self.version, self.deleted, self.existed = rid, version, deleted, existed


async def _lookup(conn: AsyncConnection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], _Current]:
    found: dict[tuple[str, str], _Current] = {}
    ordered = sorted(keys)
    r = t.resource.c
    for i in range(0, len(ordered), _CHUNK):
        chunk = ordered[i : i + _CHUNK]
        rows = await conn.execute(
            select(r.rid, r.type, r.id, r.version, r.deleted).where(tuple_(r.type, r.id).in_(chunk))
        )
        for rid, type_, id_, version, deleted in rows:
            found[(type_, id_)] = _Current(rid, version, bool(deleted), True)
    return found


async def _create_logical(
    conn: AsyncConnection, keys: list[tuple[str, str]], now: int
) -> dict[tuple[str, str], _Current]:
    if not keys:
        return {}
    rows = [{"type": k[0], "id": k[1], "version": 0, "last_updated": now, "deleted": False, "vid": 0} for k in keys]
    result = await conn.execute(
        insert(t.resource).returning(t.resource.c.rid, sort_by_parameter_order=True), rows
    )
    return {k: _Current(rid, 0, True, False) for k, (rid,) in zip(keys, result.all(), strict=True)}


def _body(w: PendingWrite, version: int, instant: str) -> dict[str, Any]:
    res = w.resource or {}
    meta = dict(res.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = instant
    body: dict[str, Any] = {"resourceType": w.type, "id": w.id, "meta": meta}
    for k, v in res.items():
        if k not in body:
            body[k] = v
    return body


def _check(w: PendingWrite, cur: _Current | None) -> None:
    live = cur is not None and not cur.deleted
    if w.must_not_exist and live:
        raise VersionConflict(w.type, w.id, None, cur.version if cur else None)
    if w.if_match is not None and (not live or cur is None or cur.version != w.if_match):
        raise VersionConflict(w.type, w.id, w.if_match, cur.version if live and cur else None)


async def flush(
    conn: AsyncConnection, writes: Sequence[PendingWrite], indexer: Indexer, now: int
) -> None:
    """Write ``writes`` in order; set each one's ``result``. Raises VersionConflict."""
    if not writes:
        return
    keys = {(w.type, w.id) for w in writes}
    state = await _lookup(conn, keys)
    new_keys = [k for k in sorted(keys) if k not in state and _creates(writes, k)]
    state.update(await _create_logical(conn, new_keys, now))
    instant = us_to_instant(now)

    versions: list[dict[str, Any]] = []
    final: dict[int, tuple[PendingWrite, dict[str, Any] | None]] = {}
    plan: list[tuple[PendingWrite, _Current, bool]] = []
    for w in writes:
        cur = state.get((w.type, w.id))
        _check(w, cur)
        if cur is None:  # delete of something that never existed: nothing to do
            continue
        if w.resource is None and cur.deleted:
            continue
        created = cur.deleted
        cur.version += 1
        cur.deleted = w.resource is None
        body = _body(w, cur.version, instant)
        if cur.deleted:
            body = {"resourceType": w.type, "id": w.id, "meta": body["meta"]}
        raw = dumps(body)
        versions.append(
            {"rid": cur.rid, "version": cur.version, "last_updated": now,
             "deleted": cur.deleted, "method": w.method, "body": raw}
        )
        final[cur.rid] = (w, None if cur.deleted else body)
        plan.append((w, cur, created))
        w.result = Written(w.type, w.id, cur.version, now, 0, created, cur.deleted, raw)
    if not versions:
        return
    vres = await conn.execute(
        insert(t.resource_version).returning(t.resource_version.c.vid, sort_by_parameter_order=True),
        versions,
    )
    vids = [v for (v,) in vres.all()]
    await _point_resources(conn, plan, vids, now)
    await _reindex(conn, state, final, indexer)
    await _append_log(conn, plan, vids, now)


def _creates(writes: Sequence[PendingWrite], key: tuple[str, str]) -> bool:
    return any((w.type, w.id) == key and w.resource is not None for w in writes)


async def _point_resources(
    conn: AsyncConnection, plan: list[tuple[PendingWrite, _Current, bool]], vids: list[int], now: int
) -> None:
    last: dict[int, dict[str, Any]] = {}
    for (w, cur, _), vid in zip(plan, vids, strict=True):
        last[cur.rid] = {"b_rid": cur.rid, "b_version": w.written().version, "b_vid": vid,
                         "b_deleted": w.resource is None, "b_ts": now}
    r = t.resource.c
    stmt = (
        update(t.resource)
        .where(r.rid == bindparam("b_rid"))
        .values(version=bindparam("b_version"), vid=bindparam("b_vid"),
                deleted=bindparam("b_deleted"), last_updated=bindparam("b_ts"))
    )
    await conn.execute(stmt, list(last.values()))


async def _reindex(
    conn: AsyncConnection,
    state: dict[tuple[str, str], _Current],
    final: dict[int, tuple[PendingWrite, dict[str, Any] | None]],
    indexer: Indexer,
) -> None:
    stale = [c.rid for c in state.values() if c.existed and c.rid in final]
    for table in t.INDEX_TABLES.values():
        for i in range(0, len(stale), _CHUNK):
            await conn.execute(delete(table).where(table.c.rid.in_(stale[i : i + _CHUNK])))
    rows: dict[str, list[dict[str, Any]]] = {}
    for rid, (w, body) in final.items():
        if body is None:
            continue
        for kind, entries in indexer(w.type, body).items():
            bucket = rows.setdefault(kind, [])
            for e in entries:
                row = dict(e)
                row["rid"] = rid
                bucket.append(row)
    for kind, bucket in rows.items():
        if bucket:
            await conn.execute(insert(t.INDEX_TABLES[kind]), bucket)


async def _append_log(
    conn: AsyncConnection, plan: list[tuple[PendingWrite, _Current, bool]], vids: list[int], now: int
) -> None:
    entries = []
    for (w, cur, created), vid in zip(plan, vids, strict=True):
        op = "delete" if w.resource is None else ("create" if created else "update")
        entries.append({"rid": cur.rid, "vid": vid, "type": w.type, "id": w.id,
                        "version": w.written().version, "op": op, "ts": now})
    res = await conn.execute(
        insert(t.change_log).returning(t.change_log.c.seq, sort_by_parameter_order=True), entries
    )
    for (w, _, _), (seq,) in zip(plan, res.all(), strict=True):
        r = w.written()
        w.result = Written(r.type, r.id, r.version, r.last_updated, seq, r.created, r.deleted, r.body)
