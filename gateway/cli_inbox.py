"""``vitalgate inbox list|show|replay``: the MLLP inbox and its dead letters, for operators.

``list`` searches by status, sender (MSH-3 or MSH-4), control ID (MSH-10) or patient
identifier, newest first; ``show`` prints one message with its outcome and ACK; ``replay``
runs dead letters through the pipeline again after a fix (the old row becomes ``replayed``
and points at the new one). Safe while the node runs: the store serialises writers of the
same database, across processes too.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from fhir_server.errors import StorageError
from fhir_server.storage import Store, make_engine, us_to_instant
from gateway.inbox import ACCEPTED, DEAD, REPLAYED, InboxEntry, get_entry, list_entries
from gateway.settings import Settings

inbox_app = typer.Typer(help="MLLP inbox: list, show and replay received messages.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

DbOpt = Annotated[str | None, typer.Option("--database-url", help="[VITALGATE_DATABASE_URL]")]
STATUSES = (ACCEPTED, DEAD, REPLAYED)


def _settings(database_url: str | None) -> Settings:
    return Settings(database_url=database_url) if database_url else Settings()


def _with_store(settings: Settings, fn: Callable[[Store], Awaitable[T]], *, start: bool = False) -> T:
    async def run() -> T:
        store = Store(make_engine(settings.database_url))
        try:
            if start:
                await store.start()
            return await fn(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StorageError as exc:  # no database, or not migrated: say so, no traceback
        err.print(f"cannot use the inbox at {settings.database_url}: {exc} "
                  "(is the path right, and has `vitalgate db upgrade` run?)", highlight=False)
        raise typer.Exit(1) from None


def _summary(e: InboxEntry) -> dict[str, Any]:
    return {"id": e.pk, "received": us_to_instant(e.received_at), "status": e.status,
            "sending_app": e.sending_app, "sending_facility": e.sending_facility,
            "control_id": e.control_id, "message_type": e.message_type, "peer": e.peer,
            "reason": e.reason}


@inbox_app.command("list")
def list_cmd(
    status: Annotated[str | None, typer.Option(help="accepted | dead | replayed")] = None,
    sender: Annotated[str | None, typer.Option(help="MSH-3 or MSH-4, as sent")] = None,
    control_id: Annotated[str | None, typer.Option("--control-id", help="MSH-10")] = None,
    patient: Annotated[str | None, typer.Option(help="patient identifier (as the mapper keys it)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    before: Annotated[int | None, typer.Option(help="only entries with a smaller id (paging)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    database_url: DbOpt = None,
) -> None:
    """List inbox entries, newest first."""
    if status is not None and status not in STATUSES:
        err.print(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        raise typer.Exit(2)
    entries = _with_store(_settings(database_url), lambda s: list_entries(
        s, status=status, sender=sender, control_id=control_id, patient=patient, limit=limit,
        before_pk=before))
    if as_json:
        for e in entries:
            sys.stdout.write(json.dumps(_summary(e)) + "\n")
        return
    table = Table("id", "received", "status", "sender", "control id", "type", "reason")
    for e in entries:
        s = _summary(e)
        table.add_row(str(e.pk), s["received"][:23], e.status, f"{e.sending_app} / {e.sending_facility}",
                      e.control_id, e.message_type, (e.reason or "")[:60])
    out.print(table)
    if not entries:
        err.print("no matching entries")


def _segments(data: bytes | None) -> str:
    if not data:
        return "(none)"
    return data.decode("utf-8", errors="replace").replace("\r\n", "\r").replace("\r", "\n").rstrip("\n")


@inbox_app.command("show")
def show(
    entry_id: Annotated[int, typer.Argument(help="inbox id (from list)")],
    raw: Annotated[bool, typer.Option("--raw", help="write only the payload bytes, as received")] = False,
    database_url: DbOpt = None,
) -> None:
    """Show one entry: sender, outcome, reason, the ACK sent and the message."""
    entry = _with_store(_settings(database_url), lambda s: get_entry(s, entry_id))
    if entry is None:
        err.print(f"no inbox entry #{entry_id}")
        raise typer.Exit(1)
    if raw:
        sys.stdout.buffer.write(entry.payload)
        return
    for key, value in _summary(entry).items():
        out.print(f"[bold]{key:>16}[/bold]  {value if value is not None else ''}", markup=True, highlight=False)
    out.print(f"[bold]{'payload sha256':>16}[/bold]  {entry.payload_hash}", highlight=False)
    out.print("\n[bold]ACK sent[/bold]", markup=True)
    out.print(_segments(entry.ack), markup=False, highlight=False)
    out.print("\n[bold]message[/bold]", markup=True)
    out.print(_segments(entry.payload), markup=False, highlight=False)


@inbox_app.command("replay")
def replay_cmd(
    entry_ids: Annotated[list[int], typer.Argument(help="ids of dead letters")],
    database_url: DbOpt = None,
) -> None:
    """Run dead letters through the pipeline again (after a fix to a mapping or a setting)."""
    from gateway.inbox import replay
    from gateway.mllp import Ingestor, mapping_context
    from gateway.mllp.senders import parse_senders

    settings = _settings(database_url)

    async def run(store: Store) -> list[tuple[int, str, str | None]]:
        ingestor = Ingestor(store, mapping_context(settings),
                            allowed_senders=parse_senders(settings.mllp_allow_senders))
        results = []
        for pk in entry_ids:
            try:
                r = await replay(ingestor, pk)
                results.append((pk, r.status, r.reason))
            except LookupError as exc:
                results.append((pk, "skipped", str(exc)))
        return results

    failed = False
    for pk, status, reason in _with_store(settings, run, start=True):
        out.print(f"#{pk}: {status}" + (f" ({reason})" if reason else ""), highlight=False)
        failed |= status != ACCEPTED
    if failed:
        raise typer.Exit(1)
