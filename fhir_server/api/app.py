"""FastAPI adapter: HTTP in, ``fhir_server.core.handle`` called, FHIR JSON out.

Every error on a FHIR endpoint is an OperationOutcome (never a framework error body).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from fhir_server.core import Extensions, FhirRequest, FhirResponse, ServerContext, handle
from fhir_server.errors import FhirError, outcome
from fhir_server.storage import Store, dumps

log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json-patch+json",
              "application/x-www-form-urlencoded", "")
FHIR_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
FORMAT_OK = {"json", "application/json", "application/fhir+json", "application/json+fhir"}


def render(resp: FhirResponse) -> Response:
    body = resp.body
    if isinstance(body, dict):
        body = dumps(body)
    headers = dict(resp.headers)
    if body is None:
        return Response(status_code=resp.status, headers=headers)
    return Response(content=body, status_code=resp.status, headers=headers,
                    media_type=f"{resp.content_type}; charset=utf-8")


def error_response(status: int, code: str, msg: str) -> Response:
    return render(FhirResponse(status, outcome("error", code, msg)))


def _check_format(method: str, params: list[tuple[str, str]], headers: dict[str, str]) -> None:
    fmt = next((v for k, v in params if k == "_format"), None)
    if fmt is not None and fmt not in FORMAT_OK:
        raise FhirError(406, "not-supported", f"_format {fmt!r} is not supported: this server speaks JSON")
    accept = headers.get("accept", "")
    if accept and not any(x in accept for x in ("json", "*/*", "application/*")):
        raise FhirError(406, "not-supported", f"Cannot produce {accept}: this server speaks FHIR JSON")
    ctype = headers.get("content-type", "").split(";")[0].strip()
    if method in ("POST", "PUT", "PATCH") and ctype not in JSON_TYPES:
        raise FhirError(415, "not-supported", f"Content-Type {ctype!r} is not supported: send application/fhir+json")


async def _body(request: Request) -> bytes:
    """The request body from ``receive`` directly: ``Request.body()`` reads through an async
    generator that the event loop registers (its asyncgen hooks), which showed as ~5% of a
    create's CPU in a profile taken under load."""
    chunks = []
    while True:
        msg = await request.receive()
        if msg["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return b"".join(chunks)


async def _to_request(request: Request, path: str) -> FhirRequest:
    """The request as the core sees it. Headers and query are read from the ASGI scope once
    (Starlette's ``Headers``/``QueryParams`` objects, built twice a request, cost ~30 µs)."""
    scope = request.scope
    method = scope["method"]
    # ASGI header names are lower-case; a repeated header keeps its last value
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    qs = scope["query_string"]
    params = parse_qsl(qs.decode("latin-1"), keep_blank_values=True) if qs else []
    _check_format(method, params, headers)
    params = [(k, v) for k, v in params if k not in ("_format", "_pretty")]
    body = await _body(request) if method in ("POST", "PUT", "PATCH") else b""
    if path.endswith("/_search") and method == "POST":
        if headers.get("content-type", "").split(";")[0].strip() == "application/x-www-form-urlencoded":
            params += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        body = b""
    return FhirRequest(method, path, tuple(params), headers, body or None)


class _FhirApp(FastAPI):
    """FastAPI with a direct lane for FHIR HTTP requests.

    A FHIR request needs none of the framework's per-request machinery: the handler reads the
    raw request and turns every error into an OperationOutcome itself. Passing it through
    Starlette's and FastAPI's middleware layers and route matching cost ~80 µs a request (about
    an eighth of a create's CPU), so those requests go straight to the handler; everything else
    (docs, health, dashboard, websockets) takes the normal stack.
    """

    fhir_lane: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and self.fhir_lane is not None and not scope.get("root_path")
                and scope["method"] in FHIR_METHODS):
            path = scope["path"]
            if path == "/fhir" or path.startswith("/fhir/"):
                scope["app"] = self
                await self.fhir_lane(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(store: Store, base_url: str | None = None, *, title: str = "Vitalgate",
               extensions: Extensions | None = None) -> FastAPI:
    """The FHIR app. ``base_url`` fixes absolute URLs; None derives them from each request.

    ``extensions`` carries the operations and write hooks of features built on the core
    (subscriptions, alerting); other HTTP routes (websockets, dashboard) are added by the
    caller with ``app.include_router`` before the ``/fhir`` catch-all is reached.
    """
    from fhir_server.core.resources import resource_types

    resource_types()  # imports every R4B model once (~4 s): at start-up, not in the first request
    app = _FhirApp(title=title, docs_url="/docs", openapi_url="/openapi.json")
    app.state.store = store

    def ctx_for(request: Request) -> ServerContext:
        if base_url:
            return _ctx
        return replace(_ctx, base_url=str(request.base_url).rstrip("/") + "/fhir")

    _ctx = ServerContext(store=store, base_url=base_url or "", extensions=extensions or Extensions())
    app.state.extensions = _ctx.extensions

    async def fhir(request: Request) -> Response:
        req = await _to_request(request, request.path_params.get("path", ""))
        return render(await handle(req, ctx_for(request)))

    async def fhir_lane(scope: Scope, receive: Receive, send: Send) -> None:
        scope["path_params"] = {"path": scope["path"][6:]}  # after "/fhir/"
        try:
            response = await fhir(Request(scope, receive))
        except FhirError as exc:
            response = render(FhirResponse(exc.status, exc.outcome))
        except ClientDisconnect:
            return
        except Exception as exc:  # noqa: BLE001 - every error on a FHIR endpoint is an OperationOutcome
            log.exception("unhandled error on a FHIR endpoint")
            response = error_response(500, "exception", f"Internal error ({type(exc).__name__})")
        await response(scope, receive, send)

    app.fhir_lane = fhir_lane
    # The routes stay for the OpenAPI document and for requests the lane leaves to the stack
    # (a mounted root path, other methods: 405 as an OperationOutcome).
    app.router.routes.append(Route("/fhir/{path:path}", fhir, methods=list(FHIR_METHODS)))
    # the base itself (a transaction or batch is POSTed to it): served, not redirected to
    # ``/fhir/``, which cost clients a second round trip and loses the body for some of them
    app.router.routes.append(Route("/fhir", fhir, methods=list(FHIR_METHODS)))
    _document_fhir_route(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        try:
            await store.last_seq()
        except Exception:  # noqa: BLE001 - readiness reports, never raises
            return Response('{"status":"unavailable"}', 503, media_type="application/json")
        return Response('{"status":"ready"}', media_type="application/json")

    _install_error_handlers(app)
    return app


def _document_fhir_route(app: FastAPI) -> None:
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = base_openapi()
            op = {"summary": "FHIR R4B REST interactions", "parameters": [
                {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
                  "responses": {"200": {"description": "FHIR JSON (application/fhir+json)"}}}
            doc.setdefault("paths", {})["/fhir/{path}"] = {m.lower(): {**op, "operationId": f"fhir_{m.lower()}"}
                                                            for m in FHIR_METHODS}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def fhir_error(_: Request, exc: FhirError) -> Response:
        return render(FhirResponse(exc.status, exc.outcome))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return error_response(400, "invalid", f"Invalid request: {exc.errors()[:3]}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error on a FHIR endpoint")
        return error_response(500, "exception", f"Internal error ({type(exc).__name__})")


__all__ = ["create_app", "render"]
