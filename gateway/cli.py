"""The ``vitalgate`` command line (Typer). Every option also reads its ``VITALGATE_*`` variable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated

import typer
from rich.console import Console

from .settings import Settings

app = typer.Typer(help="Vitalgate: ICU edge gateway and FHIR R4B server.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console(stderr=True)

HostOpt = Annotated[str | None, typer.Option("--host", help="HTTP bind address [VITALGATE_HTTP_HOST]")]
PortOpt = Annotated[int | None, typer.Option("--port", help="HTTP port [VITALGATE_HTTP_PORT]")]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="[VITALGATE_DATABASE_URL]")]


def _settings(**overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    s = Settings(**values)  # type: ignore[arg-type]
    logging.basicConfig(level=s.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return s


@app.command()
def serve(host: HostOpt = None, port: PortOpt = None, database_url: DbOpt = None,
          mllp_port: Annotated[int | None, typer.Option(help="[VITALGATE_MLLP_PORT]")] = None) -> None:
    """Run the node: FHIR server, MLLP listener, alerting."""
    from .app import serve as run

    s = _settings(http_host=host, http_port=port, database_url=database_url, mllp_port=mllp_port)
    _banner(s)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(s))


DEMO_MIX = {"stable": 0.5, "sepsis": 0.2, "respiratory-failure": 0.15, "hypotension": 0.15}


@app.command()
def demo(beds: Annotated[int, typer.Option(min=1, max=200, help="Simulated beds")] = 8,
         duration: Annotated[float, typer.Option(help="Seconds to simulate (0: until Ctrl-C)")] = 0.0,
         seed: Annotated[int, typer.Option(help="Scenario and physiology seed")] = 1,
         host: HostOpt = None, port: PortOpt = None, database_url: DbOpt = None) -> None:
    """The main job on the embedded default: the node plus a simulated ICU sending over real MLLP.

    Open the printed URL for the central-station dashboard; the FHIR API is under /fhir.
    """
    from .app import serve as run
    from .simulators.run import run_simulation

    s = _settings(http_host=host, http_port=port, database_url=database_url)
    _banner(s)
    console.print(f"  dashboard: [cyan]{s.fhir_base.removesuffix('/fhir')}/[/cyan]   simulating {beds} beds "
                  f"({', '.join(DEMO_MIX)}); Ctrl-C stops")

    async def simulate(node: object) -> None:
        seconds = duration or 7 * 24 * 3600.0
        stats = await run_simulation(beds, seconds, (s.mllp_host, s.mllp_port), None, DEMO_MIX, seed)
        console.print(f"simulation finished: {stats.as_dict()}")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(s, extra=simulate))


def _banner(s: Settings) -> None:
    console.print(f"[bold]Vitalgate[/bold] FHIR base: [cyan]{s.fhir_base}[/cyan]  (metadata: {s.fhir_base}/metadata)")
    console.print(f"  MLLP: {s.mllp_host}:{s.mllp_port}   database: {s.database_url}")
    if s.http_host in ("127.0.0.1", "localhost", "::1"):
        console.print("  bound to loopback only: authorization is not implemented yet")


@db_app.command("upgrade")
def db_upgrade(database_url: DbOpt = None) -> None:
    """Create or migrate the database schema to the latest revision."""
    from fhir_server.storage import make_engine, upgrade

    s = _settings(database_url=database_url)

    async def run() -> None:
        engine = make_engine(s.database_url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    console.print(f"database at head: {s.database_url}")


from .cli_devices import profiles_app, simulate  # noqa: E402 - device commands live in their own module

app.add_typer(profiles_app, name="profiles")
from .cli_model import model_app  # noqa: E402 - model registry commands

app.add_typer(model_app, name="model")
app.command("simulate")(simulate)
from .cli_inbox import inbox_app  # noqa: E402 - MLLP inbox commands

app.add_typer(inbox_app, name="inbox")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
