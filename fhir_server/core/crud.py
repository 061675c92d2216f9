"""create, read, vread, update, patch, delete (https://hl7.org/fhir/R4B/http.html).

Write handlers are functions of the writer's transaction, so a transaction Bundle can run
several of them atomically and conditional operations see a consistent database.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
from sqlalchemy import select

from fhir_server.errors import (
    FhirError,
    VersionConflict,
    bad_request,
    conflict,
    gone,
    not_found,
    precondition_failed,
    unprocessable,
)
from fhir_server.storage import StoredVersion, WriteTx, Written, loads
from fhir_server.storage import schema as t

from . import fastread
from .ids import new_id
from .request import FhirRequest
from .resources import validate
from .search_exec import match_ids


def parse_etag(value: str | None) -> int | None:
    """``W/"3"`` (or ``3``) → 3; None when absent."""
    if not value:
        return None
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip('"')
    if not v.isdigit():
        raise bad_request(f"If-Match must be a version ETag like W/\"3\", got {value!r}")
    return int(v)


async def read_version(db: Any, type_: str, id_: str, version: int | None = None) -> StoredVersion | None:
    if version is None and fastread.usable(db):
        rows = (await fastread.fetch_many(db, [(fastread.READ_SQL, (type_, id_))]))[0]
        return None if not rows else StoredVersion(type_, id_, rows[0][0], rows[0][1], bool(rows[0][2]), rows[0][3])
    r, v = t.resource.c, t.resource_version.c
    cols = (v.version, v.last_updated, v.deleted, v.body)
    if version is None:
        stmt = select(*cols).join(t.resource, r.vid == v.vid).where(r.type == type_, r.id == id_)
    else:
        stmt = select(*cols).join(t.resource, r.rid == v.rid).where(
            r.type == type_, r.id == id_, v.version == version
        )
    row = (await db.fetch(stmt)).first()
    return None if row is None else StoredVersion(type_, id_, row[0], row[1], bool(row[2]), row[3])


async def read(db: Any, type_: str, id_: str) -> StoredVersion:
    sv = await read_version(db, type_, id_)
    if sv is None:
        raise not_found(f"{type_}/{id_} is not known")
    if sv.deleted:
        raise gone(f"{type_}/{id_} was deleted (version {sv.version})")
    return sv


async def vread(db: Any, type_: str, id_: str, vid: str) -> StoredVersion:
    if not vid.isdigit():
        raise not_found(f"version {vid!r} of {type_}/{id_} is not known")
    sv = await read_version(db, type_, id_, int(vid))
    if sv is None:
        raise not_found(f"version {vid} of {type_}/{id_} is not known")
    if sv.deleted:
        raise gone(f"version {vid} of {type_}/{id_} is a deletion")
    return sv


def _write_error(exc: VersionConflict, type_: str, id_: str) -> FhirError:
    if exc.expected is None:
        return conflict(f"{type_}/{id_} already exists")
    return precondition_failed(
        f"{type_}/{id_}: If-Match version {exc.expected} does not match current version {exc.actual}"
    )


async def _put(tx: WriteTx, type_: str, id_: str, res: dict[str, Any], method: str,
               if_match: int | None = None, must_not_exist: bool = False, minted: bool = False) -> Written:
    w = tx.put(type_, id_, res, method=method, if_match=if_match, must_not_exist=must_not_exist,  # type: ignore[arg-type]
               minted=minted)
    try:
        await tx.flush()
    except VersionConflict as exc:
        raise _write_error(exc, type_, id_) from exc
    return w.written()


async def create(tx: WriteTx, req: FhirRequest, type_: str,
                 res: dict[str, Any]) -> tuple[Written | StoredVersion, bool]:
    """POST. Returns (result, created). ``If-None-Exist`` makes it conditional."""
    validate(res, type_)
    cond = req.header("if-none-exist")
    if cond:
        ids = await match_ids(tx, type_, cond, limit=2)
        if len(ids) > 1:
            raise precondition_failed(f"If-None-Exist matched {len(ids)} {type_} resources", "multiple-matches")
        if ids:
            return await read(tx, type_, ids[0]), False
    res = {k: v for k, v in res.items() if k != "id"}
    return await _put(tx, type_, new_id(), res, "POST", must_not_exist=True, minted=True), True


async def update(tx: WriteTx, req: FhirRequest, type_: str, id_: str, res: dict[str, Any]) -> Written:
    """PUT Type/id: update, or create with a client-assigned id."""
    validate(res, type_)
    if res.get("id") != id_:
        raise bad_request(f"Resource id {res.get('id')!r} must equal the URL id {id_!r}", ["id"])
    return await _put(tx, type_, id_, res, "PUT", if_match=parse_etag(req.header("if-match")))


async def conditional_update(tx: WriteTx, req: FhirRequest, type_: str, query: str, res: dict[str, Any]) -> Written:
    validate(res, type_)
    ids = await match_ids(tx, type_, query, limit=2)
    if len(ids) > 1:
        raise precondition_failed(f"Conditional update matched {len(ids)} {type_} resources", "multiple-matches")
    if ids:
        if res.get("id") not in (None, ids[0]):
            raise bad_request(f"Resource id {res.get('id')!r} differs from the matched {ids[0]}", ["id"])
        id_ = ids[0]
    else:
        id_ = res.get("id") or new_id()
    res = {**res, "id": id_}
    return await _put(tx, type_, id_, res, "PUT", if_match=parse_etag(req.header("if-match")))


async def patch(tx: WriteTx, req: FhirRequest, type_: str, id_: str, body: bytes | None,
                hook: Any = None) -> Written:
    """JSON Patch (RFC 6902). The result is re-validated (422 if invalid)."""
    ctype = (req.header("content-type") or "").split(";")[0].strip()
    if ctype != "application/json-patch+json":
        raise FhirError(415, "not-supported", "PATCH needs Content-Type application/json-patch+json")
    current = await read(tx, type_, id_)
    if_match = parse_etag(req.header("if-match"))
    if if_match is not None and if_match != current.version:
        raise precondition_failed(f"If-Match {if_match} does not match current version {current.version}")
    try:
        ops = loads(body or b"")
        patched = jsonpatch.apply_patch(loads(current.body), ops)
    except (ValueError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise unprocessable(f"JSON Patch could not be applied: {exc}") from exc
    if patched.get("id") != id_ or patched.get("resourceType") != type_:
        raise unprocessable("A patch may not change resourceType or id")
    validate(patched, type_, status=422)
    if hook is not None:
        patched = await hook(tx, req, type_, patched)
    patched.pop("meta", None) if not _keeps_meta(patched) else None
    return await _put(tx, type_, id_, patched, "PATCH", if_match=current.version)


def _keeps_meta(res: dict[str, Any]) -> bool:
    meta = res.get("meta") or {}
    return any(k not in ("versionId", "lastUpdated") for k in meta)


async def delete(tx: WriteTx, req: FhirRequest, type_: str, id_: str) -> Written | None:
    """DELETE Type/id. None when there was nothing live to delete."""
    w = tx.delete(type_, id_, if_match=parse_etag(req.header("if-match")))
    try:
        await tx.flush()
    except VersionConflict as exc:
        raise _write_error(exc, type_, id_) from exc
    return w.result


async def conditional_delete(tx: WriteTx, req: FhirRequest, type_: str, query: str) -> Written | None:
    ids = await match_ids(tx, type_, query, limit=2)
    if len(ids) > 1:
        raise precondition_failed(f"Conditional delete matched {len(ids)} {type_} resources", "multiple-matches")
    if not ids:
        return None
    return await delete(tx, req, type_, ids[0])
