"""Composition root: builds the store, the FHIR app, the listeners and the consumers.

Everything is wired here from explicit settings; nothing else imports ``gateway.app``.
A *part* is an async context manager factory ``part(node)`` that starts one long-lived
component (MLLP listener, alerting consumer, subscription delivery, dashboard) and may
contribute FHIR operations and write hooks (``node.extensions``) and HTTP routes
(``node.routers``) before the HTTP app is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI

from fhir_server.api import create_app
from fhir_server.core import Extensions
from fhir_server.storage import Store, make_engine, upgrade
from fhir_server.subscriptions.ws_protocol import NODE_WS_CONFIG

from .gc_policy import apply_gc_policy
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Node:
    """What parts share: settings, the started store, and contributions to the HTTP app."""

    settings: Settings
    store: Store
    extensions: Extensions = field(default_factory=Extensions)
    routers: list[APIRouter] = field(default_factory=list)
    services: dict[str, Any] = field(default_factory=dict)  # started parts by name, for tests and the CLI


Part = Callable[[Node], contextlib.AbstractAsyncContextManager[Any]]


async def open_store(settings: Settings) -> Store:
    """Engine, migrations (an empty database is created), started writer."""
    if settings.sqlite_path is not None:
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    await upgrade(engine)
    store = Store(engine, writer_process=settings.writer_process)
    await store.start()
    return store


@contextlib.asynccontextmanager
async def running_node(settings: Settings, parts: list[tuple[str, Part]] | None = None) -> AsyncIterator[Node]:
    """The node's long-lived parts: store, listeners and consumers, torn down in reverse order."""
    store = await open_store(settings)
    node = Node(settings, store)
    stack = contextlib.AsyncExitStack()
    try:
        for name, part in default_parts() if parts is None else parts:
            node.services[name] = await stack.enter_async_context(part(node))
        yield node
    finally:
        await stack.aclose()
        await store.close()


def default_parts() -> list[tuple[str, Part]]:
    """Every part this installation has, in start order (consumers before listeners)."""
    parts: list[tuple[str, Part]] = []
    with contextlib.suppress(ImportError):
        from .alerting import alerting_service

        parts.append(("alerting", alerting_service))
    with contextlib.suppress(ImportError):
        from fhir_server.subscriptions.service import subscription_service

        parts.append(("subscriptions", subscription_service))
    with contextlib.suppress(ImportError):
        from .mllp.service import mllp_service

        parts.append(("mllp", lambda node: mllp_service(node.settings, node.store)))
    with contextlib.suppress(ImportError):
        from .devices.service import device_service

        parts.append(("devices", lambda node: device_service(node.settings, node.store)))
    from .dashboard import dashboard_service

    parts.append(("dashboard", dashboard_service))
    return parts


def build_app(node: Node) -> FastAPI:
    app = create_app(node.store, node.settings.base_url and node.settings.fhir_base, extensions=node.extensions)
    for router in node.routers:
        app.include_router(router)
    return app


async def serve(settings: Settings, *, extra: Callable[[Node], Coroutine[Any, Any, None]] | None = None,
                parts: list[tuple[str, Part]] | None = None) -> None:
    """Run the node until cancelled: HTTP (FHIR, health) plus every listener and consumer."""
    async with running_node(settings, parts) as node:
        # NODE_WS_CONFIG: subscription fan-outs write websocket frames straight to the transports
        config = uvicorn.Config(build_app(node), host=settings.http_host, port=settings.http_port,
                                log_level=settings.log_level.lower(), lifespan="off", access_log=False,
                                **NODE_WS_CONFIG)
        server = uvicorn.Server(config)
        # Everything loaded so far (modules, models, the HTTP app) lives as long as the node: frozen
        # out of the collector's sight (a full collection scanning it stalled the loop 250 ms at
        # 1,000 Obs/s; docs/alerting.md section 8), then the node's thresholds (gateway/gc_policy.py)
        apply_gc_policy(settings)
        if settings.http_host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("binding to %s: authorization is not implemented yet, anyone on the network can read data",
                        settings.http_host)
        tasks = [asyncio.create_task(server.serve(), name="http")]
        if extra is not None:
            tasks.append(asyncio.create_task(extra(node), name="extra"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
        finally:
            server.should_exit = True
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
