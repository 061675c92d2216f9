"""``python -m gateway.mllp [--port N] [--tls-cert C --tls-key K] [--allow CIDRS]``: the MLLP
listener alone (settings from ``VITALGATE_*``); prints ``mllp listening on HOST:PORT``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from gateway.settings import Settings

from .server import parse_allowlist, server_ssl_context
from .wiring import listener_config, run_listener


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m gateway.mllp")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--tls-client-ca")
    p.add_argument("--allow", default="", help="peer IPs/CIDRs, comma separated [VITALGATE_MLLP_ALLOW_PEERS]")
    args = p.parse_args(argv)
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, object] = {}
    if args.allow:
        overrides["allow"] = parse_allowlist(args.allow)
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.tls_cert:
        overrides["ssl"] = server_ssl_context(args.tls_cert, args.tls_key, args.tls_client_ca)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_listener(settings, listener_config(settings, **overrides)))


if __name__ == "__main__":
    main()
