"""Composition root: builds the store, the FHIR app, the listeners and the consumers.

Everything is wired here from explicit settings; nothing else imports ``gateway``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import uvicorn

from fhir_server.api import create_app
from fhir_server.storage import Store, make_engine, upgrade

from .settings import Settings

log = logging.getLogger(__name__)


async def open_store(settings: Settings) -> Store:
    """Engine, migrations (an empty database is created), started writer."""
    engine = make_engine(settings.database_url)
    await upgrade(engine)
    store = Store(engine)
    await store.start()
    return store


@contextlib.asynccontextmanager
async def running_node(settings: Settings) -> AsyncIterator[Store]:
    """The node's long-lived parts: store, MLLP listener and consumers, torn down in order."""
    store = await open_store(settings)
    stack = contextlib.AsyncExitStack()
    try:
        for starter in _optional_parts():
            await stack.enter_async_context(starter(settings, store))
        yield store
    finally:
        await stack.aclose()
        await store.close()


def _optional_parts() -> list[Callable[[Settings, Store], contextlib.AbstractAsyncContextManager[object]]]:
    parts = []
    with contextlib.suppress(ImportError):
        from .mllp.service import mllp_service

        parts.append(mllp_service)
    with contextlib.suppress(ImportError):
        from .alerting import alerting_service

        parts.append(alerting_service)
    return parts


async def serve(settings: Settings, *, extra: Callable[[Store], Awaitable[None]] | None = None) -> None:
    """Run the node until cancelled: HTTP (FHIR, health) plus every listener and consumer."""
    async with running_node(settings) as store:
        app = create_app(store, settings.base_url and settings.fhir_base)
        config = uvicorn.Config(app, host=settings.http_host, port=settings.http_port,
                                log_level=settings.log_level.lower(), lifespan="off", access_log=False)
        server = uvicorn.Server(config)
        if settings.http_host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("binding to %s: authorization is not implemented yet, anyone on the network can read data",
                        settings.http_host)
        tasks = [asyncio.create_task(server.serve(), name="http")]
        if extra is not None:
            tasks.append(asyncio.create_task(extra(store), name="extra"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
        finally:
            server.should_exit = True
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
