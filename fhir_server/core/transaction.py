"""batch and transaction Bundles (https://hl7.org/fhir/R4B/http.html#transaction).

A transaction runs all its entries in ONE writer transaction, in FHIR order (DELETE, POST,
PUT/PATCH, GET), with ``urn:uuid:`` references rewritten to the ids assigned or matched;
any failure rolls everything back. A batch runs each entry on its own and reports each
entry's outcome.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from fhir_server.errors import FhirError, VersionConflict, bad_request, conflict, precondition_failed
from fhir_server.storage import PendingWrite, WriteTx, dumps
from fhir_server.storage.types import Prepared

from .context import ServerContext
from .ids import new_id
from .render import written
from .request import FhirRequest, FhirResponse
from .resources import check_type, empty_member, first_empty, parse_json, validate
from .search_exec import match_ids

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
# an entry URL that ``urlsplit`` would return whole as its path (no scheme, query, fragment
# or characters it strips): the common case skips it and ``parse_qsl`` (~5 us an entry)
_PLAIN_URL = re.compile(r"[A-Za-z0-9_.$/-]+")


def _entry_request(entry: dict[str, Any], index: int) -> FhirRequest:
    request = entry.get("request")
    if not isinstance(request, dict) or "method" not in request or "url" not in request:
        raise bad_request(f"Bundle.entry[{index}].request needs method and url", [f"Bundle.entry[{index}].request"])
    method = str(request["method"]).upper()
    if method not in ORDER:
        raise bad_request(f"Bundle.entry[{index}]: unsupported method {method}")
    url = str(request["url"])
    params: tuple[tuple[str, str], ...]
    if _PLAIN_URL.fullmatch(url) and not url.startswith("//"):  # "Observation", "Patient/1": no query
        path, params = url.lstrip("/"), ()
    else:
        parts = urlsplit(url)
        path, params = parts.path.lstrip("/"), tuple(parse_qsl(parts.query))
    headers = {}
    for src, dst in (("ifMatch", "if-match"), ("ifNoneExist", "if-none-exist"), ("ifNoneMatch", "if-none-match")):
        if request.get(src):
            headers[dst] = str(request[src])
    resource = entry.get("resource")
    body = None
    if method == "PATCH" and isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        import base64

        body = base64.b64decode(resource.get("data", ""))
        headers["content-type"] = resource.get("contentType", "application/json-patch+json")
        resource = None
    return FhirRequest(method, path, params, headers, body, resource)


def _validate_shell(b: Any) -> list[dict[str, Any]]:
    """Validate the Bundle without its entries' resources and return the entries.

    Each entry's resource is validated by the interaction that uses it, so a batch reports an
    invalid resource on its own entry, and nothing is validated twice.
    """
    if not isinstance(b, dict):
        raise bad_request("A Bundle must be a JSON object", code="structure")
    entries = b.get("entry") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise bad_request("Bundle.entry must be a list of objects", ["Bundle.entry"], code="structure")
    for i, e in enumerate(entries):
        if "resource" in e and not isinstance(e["resource"], dict):
            raise bad_request(f"Bundle.entry[{i}].resource must be an object", [f"Bundle.entry[{i}].resource"])
    shells = [{k: v for k, v in e.items() if k != "resource"} for e in entries]
    _check_empty_members(b, entries, shells)
    # Entries alike (``request`` POST Type, no fullUrl) validate alike: check each distinct one
    # once; only a failure is checked again with every entry, for the error's entry index.
    distinct = list({dumps(e): e for e in shells}.values())
    try:
        validate({**b, "entry": distinct}, "Bundle", check_empty=False)
    except FhirError:
        if len(distinct) == len(shells):
            raise
        validate({**b, "entry": shells}, "Bundle", check_empty=False)
    return entries


def _check_empty_members(b: dict[str, Any], entries: list[dict[str, Any]], shells: list[dict[str, Any]]) -> None:
    """The Bundle's own members (its entries' resources are checked with each resource): an entry
    holding only a resource has an empty shell, which is not an empty entry."""
    where = first_empty({k: v for k, v in b.items() if k != "entry"}, "Bundle")
    if where is None and "entry" in b and not b["entry"]:
        where = "Bundle.entry"
    for i, (entry, shell) in enumerate(zip(entries, shells, strict=True)):
        if where is not None:
            break
        where = f"Bundle.entry[{i}]" if not entry else first_empty(shell, f"Bundle.entry[{i}]")
    if where is not None:
        raise empty_member(where)


async def bundle_interaction(req: FhirRequest, ctx: ServerContext) -> FhirResponse:
    b = req.resource if req.resource is not None else parse_json(req.body)
    entries = _validate_shell(b)
    kind = b.get("type")
    if len(entries) > ctx.max_bundle_entries:
        raise FhirError(413, "too-costly", f"Bundle has {len(entries)} entries, limit {ctx.max_bundle_entries}")
    if kind == "transaction":
        return FhirResponse(200, await _transaction(entries, ctx))
    if kind == "batch":
        return FhirResponse(200, await _batch(entries, ctx))
    raise bad_request(f"Bundle.type must be batch or transaction, got {kind!r}", ["Bundle.type"])


def _entry_response(resp: FhirResponse) -> dict[str, Any]:
    out: dict[str, Any] = {"status": str(resp.status)}
    loc = resp.headers.get("Location") or resp.headers.get("Content-Location")
    if loc:
        out["location"] = loc
    if "ETag" in resp.headers:
        out["etag"] = resp.headers["ETag"]
    if "Last-Modified" in resp.headers:
        out["lastModified"] = resp.headers["Last-Modified"]
    e: dict[str, Any] = {"response": out}
    if isinstance(resp.body, bytes):
        e["resource"] = orjson.Fragment(resp.body)
    elif isinstance(resp.body, dict):
        if resp.body.get("resourceType") == "OperationOutcome":
            out["outcome"] = resp.body
        else:
            e["resource"] = resp.body
    return e


async def _batch(entries: list[dict[str, Any]], ctx: ServerContext) -> dict[str, Any]:
    from .bundles import bundle
    from .router import handle

    async def one(i: int, entry: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = await handle(_entry_request(entry, i), ctx)
        except FhirError as exc:
            resp = FhirResponse(exc.status, exc.outcome)
        return _entry_response(resp)

    results = await asyncio.gather(*(one(i, e) for i, e in enumerate(entries)))
    return bundle("batch-response", list(results))


async def _transaction(entries: list[dict[str, Any]], ctx: ServerContext) -> dict[str, Any]:
    from .bundles import bundle

    reqs = [_entry_request(e, i) for i, e in enumerate(entries)]
    for i, r in enumerate(reqs):
        if not r.parts or r.parts[0] in ("metadata", "_history") or r.parts[0].startswith("$"):
            continue
        try:
            check_type(r.parts[0])
        except FhirError as exc:
            raise _at_entry(exc, i) from None
    order = sorted(range(len(reqs)), key=lambda i: ORDER[reqs[i].method])
    valid = _prevalidate(reqs)
    # without a conditional entry no id depends on the database: assign them, and serialise and
    # index the plain creates, before the writer (its transaction is the one serial step)
    early = None if any(_needs_match(r) for r in reqs) else await _assign_ids(None, entries, reqs)
    ready = {} if early is None else _prepare_creates(reqs, early, valid, ctx)

    async def job(tx: WriteTx) -> list[dict[str, Any]]:
        ids = early if early is not None else await _assign_ids(tx, entries, reqs)
        _no_overlap(reqs)
        out: list[FhirResponse | _Deferred | None] = [None] * len(reqs)
        try:
            for i in order:
                try:
                    if i in ready:
                        r, (type_, id_, body, prepared) = reqs[i], ready[i]
                        out[i] = _Deferred(r, tx.put(type_, id_, body, method="POST", must_not_exist=True,
                                                     prepared=prepared, minted=True))
                        continue
                    out[i] = await _run_entry(tx, reqs[i], ids, entries[i], ctx, i in valid)
                except FhirError as exc:
                    raise _at_entry(exc, i) from None
            await tx.flush()
        except VersionConflict as exc:
            raise _conflict_at(exc, out) from None
        return [_entry_response(o if isinstance(o, FhirResponse) else written(o.req, ctx.base_url, o.write.written()))
                for o in out if o is not None]

    return bundle("transaction-response", await ctx.store.write(job))


def _needs_match(r: FhirRequest) -> bool:
    """An entry whose target id is found by a search: ``ifNoneExist`` or a conditional update."""
    return r.method == "POST" and bool(r.header("if-none-exist")) or r.method == "PUT" and len(r.parts) == 1


def _prepare_creates(reqs: list[FhirRequest], ids: dict[str, str], valid: set[int],
                     ctx: ServerContext) -> dict[int, tuple[str, str, dict[str, Any], Prepared | None]]:
    """The validated plain creates of types without a write hook, with references rewritten,
    serialised and indexed (``Store.prepare``): entry index → (type, id, body, prepared)."""
    out = {}
    for i in valid:
        r = reqs[i]
        type_, id_ = r.headers["x-assigned"].split("/", 1)
        if ctx.extensions.write_hooks.get(type_):
            continue
        res = _rewrite(r.resource, ids) if ids else r.resource
        body = {k: v for k, v in res.items() if k != "id"}  # type: ignore[union-attr]
        out[i] = (type_, id_, body, ctx.store.prepare(type_, id_, body))
    return out


async def _assign_ids(tx: WriteTx | None, entries: list[dict[str, Any]], reqs: list[FhirRequest]) -> dict[str, str]:
    """fullUrl (``urn:uuid:...``) → ``Type/id`` for every entry that creates or updates
    (``tx`` None: no entry needs a search, see ``_needs_match``)."""
    ids: dict[str, str] = {}
    for entry, r in zip(entries, reqs, strict=True):
        full = entry.get("fullUrl")
        parts = r.parts
        if r.method == "POST" and len(parts) == 1:
            target = f"{parts[0]}/{new_id()}"
            cond = r.header("if-none-exist")
            if cond:
                found = await match_ids(tx, parts[0], cond, limit=2)
                if len(found) > 1:
                    raise precondition_failed(f"ifNoneExist matched {len(found)} resources", "multiple-matches")
                if found:
                    target = f"{parts[0]}/{found[0]}"
            if full:
                ids[full] = target
            extra = {"x-assigned": target, **({"x-existing": "1"} if cond and found else {})}
            object.__setattr__(r, "headers", {**r.headers, **extra})
        elif r.method == "PUT" and len(parts) == 1:
            found = await match_ids(tx, parts[0], _qs(r), limit=2)
            if len(found) > 1:
                raise precondition_failed(f"conditional update matched {len(found)} resources", "multiple-matches")
            res_id = found[0] if found else (r.resource or {}).get("id") or new_id()
            target = f"{parts[0]}/{res_id}"
            if full:
                ids[full] = target
            object.__setattr__(r, "headers", {**r.headers, "x-assigned": target})
        elif r.method == "PUT" and len(parts) == 2 and full:
            ids[full] = f"{parts[0]}/{parts[1]}"
    return ids


def _at_entry(exc: FhirError, i: int) -> FhirError:
    exc.outcome["issue"][0]["diagnostics"] = f"Bundle.entry[{i}]: {exc.outcome['issue'][0]['diagnostics']}"
    return exc


def _no_overlap(reqs: list[FhirRequest]) -> None:
    """One resource written by two entries fails the transaction (http.html#trules), as 409."""
    seen: dict[str, int] = {}
    for i, r in enumerate(reqs):
        if r.method not in ("PUT", "PATCH", "DELETE", "POST"):
            continue
        target = r.headers.get("x-assigned") or ("/".join(r.parts[:2]) if len(r.parts) == 2 else None)
        if target is None:
            continue
        if target in seen:
            raise conflict(f"Bundle.entry[{seen[target]}] and Bundle.entry[{i}] both write {target}")
        seen[target] = i


def _qs(r: FhirRequest) -> str:
    from urllib.parse import urlencode

    return urlencode(r.params)


def _rewrite(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "reference" and isinstance(v, str) and v in ids:
                out[k] = ids[v]
            else:
                out[k] = _rewrite(v, ids)
        return out
    if isinstance(value, list):
        return [_rewrite(v, ids) for v in value]
    return value


@dataclass
class _Deferred:
    """A create or update queued in the transaction; its response is built after the flush."""

    req: FhirRequest
    write: PendingWrite


def _prevalidate(reqs: list[FhirRequest]) -> set[int]:
    """Validate the resources of plain POST entries before the job reaches the writer, so the
    writer's transaction does not wait on validation (the costliest step of a create) and the
    validation of one Bundle overlaps the commit of another. Returns the entries checked.
    Rewriting ``urn:uuid:`` references later replaces one string by another: still valid."""
    done = set()
    for i, r in enumerate(reqs):
        if r.method == "POST" and len(r.parts) == 1 and not r.header("if-none-exist"):
            try:
                validate(r.resource, r.parts[0])
            except FhirError as exc:
                raise _at_entry(exc, i) from None
            done.add(i)
    return done


async def _run_entry(tx: WriteTx, r: FhirRequest, ids: dict[str, str], entry: dict[str, Any],
                     ctx: ServerContext, validated: bool = False) -> FhirResponse | _Deferred:
    """Run one entry. Plain creates and updates are only queued (one flush for all of them)."""
    from . import crud
    from .render import stored
    from .router import read_op, write_op

    res = _rewrite(r.resource, ids) if r.resource is not None and ids else r.resource
    assigned = r.headers.get("x-assigned")
    if r.method == "POST" and assigned:
        type_, id_ = assigned.split("/", 1)
        if r.headers.get("x-existing"):  # ifNoneExist matched: nothing is written
            return stored(r, ctx.base_url, await crud.read(tx, type_, id_))
        checked: dict[str, Any] = res if validated and isinstance(res, dict) else validate(res, type_)
        res = await ctx.extensions.before_write(tx, r, type_, checked)
        body = {k: v for k, v in res.items() if k != "id"}
        return _Deferred(r, tx.put(type_, id_, body, method="POST", must_not_exist=True, minted=True))
    if r.method == "PUT" and (assigned or len(r.parts) == 2):
        type_, id_ = (assigned or r.path).split("/", 1)
        if assigned:
            res = {**(res or {}), "id": id_}
        validate(res, type_)
        if res.get("id") != id_:  # type: ignore[union-attr]
            raise bad_request(f"Resource id {res.get('id')!r} must equal the URL id {id_!r}", ["id"])  # type: ignore[union-attr]
        res = await ctx.extensions.before_write(tx, r, type_, res)  # type: ignore[arg-type]
        return _Deferred(r, tx.put(type_, id_, res, method="PUT", if_match=crud.parse_etag(r.header("if-match"))))
    r = FhirRequest(r.method, r.path, r.params, r.headers, r.body, res)
    if r.method in ("GET", "HEAD"):
        return await read_op(tx, r, ctx)
    return await write_op(tx, r, ctx)


def _conflict_at(exc: VersionConflict, out: list[FhirResponse | _Deferred | None]) -> FhirError:
    """The 409/412 of a queued write that failed at the flush, named by its entry."""
    from .crud import _write_error

    for i, o in enumerate(out):
        if isinstance(o, _Deferred) and str(exc).startswith(f"{o.write.type}/{o.write.id}:"):
            return _at_entry(_write_error(exc, o.write.type, o.write.id), i)
    return FhirError(409, "conflict", str(exc))
