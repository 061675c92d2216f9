"""Build the MLLP listener from settings: mapping context (site time zone, vendor code maps),
ingestor and server. ``run_listener`` is what ``python -m gateway.mllp`` runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from zoneinfo import ZoneInfo

from fhir_server.storage import Store, make_engine, upgrade
from gateway.gc_policy import apply_gc_policy
from gateway.settings import Settings
from mappers.hl7v2 import MappingContext

from .server import ListenerConfig, parse_allowlist, server_ssl_context

log = logging.getLogger(__name__)


def mapping_context(settings: Settings) -> MappingContext:
    """Site time zone, accepted processing IDs and every vendor profile's code maps."""
    from mappers.profiles import load_all, merged_code_aliases, merged_unit_aliases

    profiles = load_all()
    ids = frozenset(p.strip() for p in settings.mllp_accepted_processing_ids.split(",") if p.strip())
    return MappingContext(
        site_tz=ZoneInfo(settings.site_tz),
        code_aliases=merged_code_aliases(profiles),
        unit_aliases=merged_unit_aliases(profiles),
        accepted_processing_ids=ids or frozenset({"P"}),
    )


def listener_config(settings: Settings, **overrides: object) -> ListenerConfig:
    """Listener settings (``VITALGATE_MLLP_*``), TLS and the peer allowlist included."""
    values: dict[str, object] = {
        "host": settings.mllp_host,
        "port": settings.mllp_port,
        "max_frame": settings.mllp_max_frame,
        "idle_timeout": settings.mllp_idle_timeout,
        "allow": parse_allowlist(settings.mllp_allow_peers),
    }
    if settings.mllp_tls_cert:
        values["ssl"] = server_ssl_context(settings.mllp_tls_cert,
                                           settings.mllp_tls_key or settings.mllp_tls_cert,
                                           settings.mllp_tls_ca)
    values.update(overrides)
    return ListenerConfig(**values)  # type: ignore[arg-type]


async def run_listener(settings: Settings, config: ListenerConfig,
                       ready: asyncio.Event | None = None) -> None:
    """Migrate, start the store and the listener, and serve until cancelled."""
    from .service import mllp_service

    engine = make_engine(settings.database_url)
    await upgrade(engine)
    store = Store(engine, group_commit_ms=settings.group_commit_ms, writer_process=settings.writer_process)
    await store.start()
    try:
        async with mllp_service(settings, store, config) as server:
            # The collector policy of `vitalgate serve` (gateway/gc_policy.py): the start-up heap
            # (modules, mapping tables) frozen out of the full scans, the node's thresholds.
            apply_gc_policy(settings)
            print(f"mllp listening on {config.host}:{server.port}", flush=True)
            if ready is not None:
                ready.set()
            stop = asyncio.Event()
            # SIGTERM: stop accepting, let commits in progress finish and ACK, then exit
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()
    finally:
        await store.close()
