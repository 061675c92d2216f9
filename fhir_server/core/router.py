"""The handler table: one FhirRequest in, one FhirResponse out (https://hl7.org/fhir/R4B/http.html)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhir_server.errors import FhirError, bad_request, not_supported
from fhir_server.storage import PendingWrite, WriteTx

from . import crud
from .capability import capability_statement
from .context import ServerContext
from .extensions import OperationCall, operation_parameters
from .history import history
from .ids import new_id
from .render import ok_outcome, stored, written
from .request import FhirRequest, FhirResponse
from .resources import check_type, parse_json, validate
from .search_exec import lastn, search

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


async def handle(req: FhirRequest, ctx: ServerContext) -> FhirResponse:
    """Dispatch one interaction. Writes run inside one writer transaction."""
    parts = req.parts
    if not parts and req.method == "POST":
        from .transaction import bundle_interaction

        return await bundle_interaction(req, ctx)
    if parts == ["metadata"] and req.method == "GET":
        return FhirResponse(200, capability_statement(ctx.base_url, dict(req.params).get("mode"), ctx.extensions))
    if parts and parts[-1].startswith("$") and parts != ["Observation", "$lastn"]:
        return await _operation(req, ctx)
    if parts == ["_history"] and req.method == "GET":
        return FhirResponse(200, await history(ctx.store, ctx.base_url, None, None, req.params, strict=_strict(req)))
    if not parts:
        raise not_supported(f"{req.method} on the FHIR base is not supported")
    check_type(parts[0])
    if req.method == "POST" and len(parts) == 1 and not req.header("if-none-exist") \
            and not ctx.extensions.write_hooks.get(parts[0]):
        return await _plain_create(req, ctx, parts[0])
    if req.method in WRITE_METHODS and not _is_search_post(parts):
        return await ctx.store.write(lambda tx: write_op(tx, req, ctx))
    return await read_op(ctx.store, req, ctx)


async def _plain_create(req: FhirRequest, ctx: ServerContext, type_: str) -> FhirResponse:
    """``POST Type`` (no condition, no write hook): validated, serialised and indexed before it
    reaches the writer (``Store.prepare``), and only queued there (a server-assigned uuid cannot
    conflict), so every create of a group commit goes into one flush and the writer's
    transaction holds no per-resource work but the inserts."""
    res = validate(_resource(req), type_)
    body = {k: v for k, v in res.items() if k != "id"}
    id_ = new_id()
    prepared = ctx.store.prepare(type_, id_, body)

    async def job(tx: WriteTx) -> PendingWrite:
        return tx.put(type_, id_, body, method="POST", must_not_exist=True, prepared=prepared, minted=True)

    w = await ctx.store.write(job)
    return written(req, ctx.base_url, w.written())


async def _operation(req: FhirRequest, ctx: ServerContext) -> FhirResponse:
    """``$name`` at system, type or instance level, as registered in ``ctx.extensions``."""
    parts, name = req.parts[:-1], req.parts[-1][1:]
    if len(parts) > 2:
        raise not_supported(f"{req.path} is not an operation URL")
    type_ = parts[0] if parts else None
    id_ = parts[1] if len(parts) == 2 else None
    if type_ is not None:
        check_type(type_)
    level = "system" if type_ is None else "type" if id_ is None else "instance"
    op = ctx.extensions.find(type_, level, name)  # type: ignore[arg-type]
    if op is None:
        where = f" on {type_}" if type_ else ""
        raise not_supported(f"Operation ${name} is not supported at {level} level{where}")
    if req.method not in op.methods:
        raise FhirError(405, "not-supported", f"${name} accepts {', '.join(op.methods)}, not {req.method}")
    body = parse_json(req.body) if req.method == "POST" and req.body else None
    params = operation_parameters(req, body)

    async def run(db: Any) -> FhirResponse:
        return await op.handler(OperationCall(req, ctx, db, type_, id_, params))

    if op.writes:
        return await ctx.store.write(run)
    return await run(ctx.store)


def _strict(req: FhirRequest) -> bool:
    return req.prefer("handling") == "strict"


def _is_search_post(parts: list[str]) -> bool:
    return len(parts) == 2 and parts[1] == "_search"


async def read_op(db: Any, req: FhirRequest, ctx: ServerContext) -> FhirResponse:
    parts, m = req.parts, req.method
    type_ = parts[0]
    if len(parts) == 1 and m == "GET" or _is_search_post(parts) and m == "POST":
        return FhirResponse(200, await search(db, ctx, req, type_, req.params))
    if len(parts) == 2 and parts[1] == "$lastn" and m == "GET":
        if type_ != "Observation":
            raise not_supported("$lastn is defined on Observation only")
        return FhirResponse(200, await lastn(db, ctx, req))
    if len(parts) == 2 and parts[1] == "_history" and m == "GET":
        return FhirResponse(200, await history(ctx.store, ctx.base_url, type_, None, req.params, strict=_strict(req)))
    if len(parts) == 2 and m == "GET" and not parts[1].startswith(("$", "_")):
        return stored(req, ctx.base_url, await crud.read(db, type_, parts[1]))
    if len(parts) == 3 and parts[2] == "_history" and m == "GET":
        await crud.read_version(db, type_, parts[1]) or await crud.read(db, type_, parts[1])
        return FhirResponse(200, await history(ctx.store, ctx.base_url, type_, parts[1], req.params,
                                                  strict=_strict(req)))
    if len(parts) == 4 and parts[2] == "_history" and m == "GET":
        return stored(req, ctx.base_url, await crud.vread(db, type_, parts[1], parts[3]))
    raise not_supported(f"{m} {req.path} is not supported")


def _resource(req: FhirRequest) -> dict[str, Any]:
    res = req.resource if req.resource is not None else parse_json(req.body)
    if not isinstance(res, dict):
        raise bad_request("A FHIR resource must be a JSON object", code="structure")
    return res


def _query(req: FhirRequest) -> str:
    from urllib.parse import urlencode

    if not req.params:
        raise bad_request(f"Conditional {req.method} needs search parameters")
    return urlencode(req.params)


async def write_op(tx: WriteTx, req: FhirRequest, ctx: ServerContext) -> FhirResponse:
    parts, m = req.parts, req.method
    type_ = parts[0]
    base = ctx.base_url
    if m in ("POST", "PUT") and len(parts) <= 2:
        req = replace(req, resource=await ctx.extensions.before_write(tx, req, type_, _resource(req)))
    if len(parts) == 1 and m == "POST":
        res, created = await crud.create(tx, req, type_, _resource(req))
        if created:
            return written(req, base, res)  # type: ignore[arg-type]
        return stored(req, base, res)  # type: ignore[arg-type]
    if len(parts) == 2 and m == "PUT":
        return written(req, base, await crud.update(tx, req, type_, parts[1], _resource(req)))
    if len(parts) == 1 and m == "PUT":
        return written(req, base, await crud.conditional_update(tx, req, type_, _query(req), _resource(req)))
    if len(parts) == 2 and m == "PATCH":
        hook = ctx.extensions.before_write if ctx.extensions.write_hooks.get(type_) else None
        return written(req, base, await crud.patch(tx, req, type_, parts[1], req.body, hook=hook))
    if len(parts) == 2 and m == "DELETE":
        w = await crud.delete(tx, req, type_, parts[1])
        return _deleted(w, f"{type_}/{parts[1]}")
    if len(parts) == 1 and m == "DELETE":
        w = await crud.conditional_delete(tx, req, type_, _query(req))
        return _deleted(w, f"{type_} matching {_query(req)}")
    raise not_supported(f"{m} {req.path} is not supported")


def _deleted(w: Any, what: str) -> FhirResponse:
    if w is None:
        resp = ok_outcome(f"Nothing to delete: {what}")
        return resp
    resp = ok_outcome(f"Deleted {w.type}/{w.id}")
    resp.headers["ETag"] = f'W/"{w.version}"'
    return resp


__all__ = ["FhirError", "handle", "read_op", "write_op"]
