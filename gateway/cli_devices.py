"""``vitalgate simulate`` and ``vitalgate profiles list|check`` (registered in ``gateway.cli``).

``simulate`` drives simulated beds over the real transports: HL7v2 over MLLP to the node
named by ``VITALGATE_MLLP_HOST`` / ``VITALGATE_MLLP_PORT`` (or ``--mllp HOST:PORT``), and,
when asked, ventilators (PB840 serial-over-TCP) and IntelliVue monitors (LAN Data Export,
UDP) listening on consecutive ports for the node to poll: the summary's ``devices_setting`` is
the ``VITALGATE_DEVICES`` value for that node. It prints a JSON summary at the end.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .settings import Settings

__all__ = ["profiles_app", "simulate"]

profiles_app = typer.Typer(help="Vendor device profiles (vendor_profiles/*.toml).", no_args_is_help=True)
_err = Console(stderr=True)


def parse_endpoint(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` -> (host, port); a clear error otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    try:
        number = int(port)
    except ValueError:
        raise typer.BadParameter(f"not HOST:PORT: {text!r}") from None
    if not 0 <= number <= 65535:
        raise typer.BadParameter(f"port out of range: {number}")
    return host or default_host, number


def parse_scenarios(values: list[str]) -> dict[str, float] | None:
    """``sepsis`` or ``sepsis=0.2`` (weights, repeatable) -> mix; unknown names are refused."""
    from gateway.simulators import SCENARIOS

    if not values:
        return None
    mix: dict[str, float] = {}
    for item in values:
        name, _, weight = item.partition("=")
        if name not in SCENARIOS:
            raise typer.BadParameter(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")
        try:
            mix[name] = float(weight) if weight else 1.0
        except ValueError:
            raise typer.BadParameter(f"not a weight: {item!r}") from None
    return mix


def simulate(
    beds: Annotated[int, typer.Option(min=1, max=2000, help="Number of simulated beds")] = 4,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds to run")] = 60.0,
    scenario: Annotated[list[str] | None, typer.Option(
        help="Scenario, optionally weighted (sepsis=0.3); repeatable. Default: all stable")] = None,
    mllp: Annotated[str | None, typer.Option(
        help="MLLP target HOST:PORT [VITALGATE_MLLP_HOST/PORT]")] = None,
    no_mllp: Annotated[bool, typer.Option("--no-mllp", help="Send no HL7v2")] = False,
    pb840_listen: Annotated[str | None, typer.Option(
        help="Run a PB840 per bed listening from HOST:PORT upwards (0 = any free port)")] = None,
    intellivue_listen: Annotated[str | None, typer.Option(
        help="Run an IntelliVue monitor per bed on UDP from HOST:PORT upwards")] = None,
    waveforms: Annotated[bool, typer.Option(help="Monitor waveforms in the HL7v2 feed")] = False,
    monitor_waves: Annotated[str, typer.Option(
        help="IntelliVue waves: standard (ECG II 250 Hz, pleth, ABP) or full (+ECG I, III, V; ECG at 500 Hz)")]
    = "standard",
    pumps: Annotated[int, typer.Option(min=0, max=8, help="Infusion pumps per bed (HL7v2)")] = 1,
    hl7_monitors: Annotated[bool, typer.Option(help="HL7v2 monitors (off when IntelliVue UDP is the monitor)")]
    = True,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same physiology)")] = 0,
    measure_after: Annotated[float, typer.Option(help="Count ACK latencies only after this many seconds")]
    = 0.0,
) -> None:
    """Simulate bedside devices of every vendor format over the real transports."""
    from gateway.simulators import run_simulation

    settings = Settings()
    target = None if no_mllp else (parse_endpoint(mllp) if mllp else (settings.mllp_host, settings.mllp_port))
    mix = parse_scenarios(scenario or [])
    extra: dict[str, object] = {"waveforms": waveforms, "pumps_per_bed": pumps, "hl7_monitors": hl7_monitors,
                               "measure_after_s": measure_after, "monitor_waves": monitor_waves}
    if monitor_waves not in ("standard", "full"):
        raise typer.BadParameter(f"--monitor-waves: standard or full, not {monitor_waves!r}")
    if intellivue_listen:
        extra["intellivue_listen"] = parse_endpoint(intellivue_listen)
    try:
        stats = asyncio.run(run_simulation(
            beds, duration, target, parse_endpoint(pb840_listen) if pb840_listen else None,
            scenario_mix=mix, seed=seed, **extra))  # type: ignore[arg-type]
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except (OSError, ValueError) as exc:
        _err.print(f"[red]simulation failed:[/red] {exc}")
        raise typer.Exit(1) from None
    typer.echo(json.dumps(stats.as_dict(), indent=2))


@profiles_app.command("list")
def profiles_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """Show the shipped profiles: vendor, models, transport, timing, code count."""
    from mappers.profiles import ProfileError, load_profile, profile_names

    rows: list[dict[str, object]] = []
    broken = 0
    for name in profile_names():
        try:
            p = load_profile(name)
        except ProfileError as exc:
            broken += 1
            rows.append({"id": name, "error": str(exc)})
            continue
        rows.append({"id": p.id, "vendor": p.vendor, "models": p.models, "device_type": p.device_type,
                     "transport": p.transport.kind, "reporting_interval_s": p.timing.reporting_interval_s,
                     "stale_timeout_s": p.timing.stale_timeout_s, "codes": len(p.codes)})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    if broken:
        raise typer.Exit(1)


def _print_table(rows: list[dict[str, object]]) -> None:
    table = Table()
    table.add_column("id", no_wrap=True)  # never folded: it is what `profiles check` names
    for name in ("vendor", "models", "type", "transport", "interval s", "stale s", "codes"):
        table.add_column(name)
    for r in rows:
        if "error" in r:
            table.add_row(str(r["id"]), f"[red]{r['error']}[/red]", "", "", "", "", "", "")
            continue
        table.add_row(str(r["id"]), str(r["vendor"]), ", ".join(r["models"]),  # type: ignore[arg-type]
                      str(r["device_type"]), str(r["transport"]), str(r["reporting_interval_s"]),
                      str(r["stale_timeout_s"]), str(r["codes"]))
    Console().print(table)


@profiles_app.command("check")
def profiles_check(
    files: Annotated[list[str] | None, typer.Argument(help="Profile files (default: the shipped ones)")] = None,
) -> None:
    """Validate profiles against the schema; exit 1 naming the file and field of each problem."""
    from pathlib import Path

    from mappers.profiles import ProfileError, check_all, load_profile_file, profile_names

    if files:
        problems = []
        for f in files:
            try:
                load_profile_file(Path(f))
            except ProfileError as exc:
                problems.extend(exc.problems)
        checked = len(files)
    else:
        problems, checked = check_all(), len(profile_names())
    for p in problems:
        typer.echo(f"ERROR {p}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{checked} profile(s) OK")
