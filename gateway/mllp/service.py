"""``mllp_service(settings, store)``: the MLLP listener as one part of the node (see
``gateway/app.py``), started on entry and stopped (connections ended, commits finished) on exit."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fhir_server.storage import Store
from gateway.settings import Settings

from .ingest import Ingestor
from .senders import parse_senders
from .server import ListenerConfig, MllpServer
from .wiring import listener_config, mapping_context


@contextlib.asynccontextmanager
async def mllp_service(settings: Settings, store: Store,
                       config: ListenerConfig | None = None) -> AsyncIterator[MllpServer]:
    ingestor = Ingestor(store, mapping_context(settings),
                        allowed_senders=parse_senders(settings.mllp_allow_senders))
    server = MllpServer(ingestor, config or listener_config(settings))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
