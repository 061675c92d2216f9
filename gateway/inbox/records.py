"""Inbox rows: building them for the ingest pipeline, and reading them back for the CLI.

Every received message is one row: raw payload, sender (MSH-3, MSH-4), control ID
(MSH-10), TCP peer, received time (epoch microseconds), SHA-256 of the payload, status
(``accepted`` | ``dead`` | ``replayed``), the reason of a dead letter, the patient keys the
mapper reported, and the ACK bytes sent (so a duplicate gets the very same ACK again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Select, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir_server.storage import Store, now_us

from .schema import inbox

ACCEPTED = "accepted"
DEAD = "dead"
REPLAYED = "replayed"
_KEY_SEP = " "  # patient keys are joined with a space in one indexed column


def _text(value: str) -> str:
    """PostgreSQL text columns refuse NUL, which a hostile or broken sender can put anywhere."""
    return value.replace("\x00", "\ufffd")


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sent a message and its control ID: the duplicate key (with the payload hash)."""

    app: str = ""
    facility: str = ""
    control_id: str = ""
    message_type: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """The duplicate key as stored (cut to the column sizes, NUL replaced)."""
        return (_text(self.app)[:180], _text(self.facility)[:180], _text(self.control_id)[:64])


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One inbox row as the CLI shows it."""

    pk: int
    received_at: int
    peer: str
    sending_app: str
    sending_facility: str
    control_id: str
    message_type: str
    payload_hash: str
    status: str
    reason: str | None
    patient_keys: tuple[str, ...]
    payload: bytes
    ack: bytes | None


def inbox_row(*, payload: bytes, digest: str, sender: Sender, peer: str, status: str,
              ack: bytes | None, reason: str | None = None,
              patient_keys: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A row for ``tx.insert(inbox, [row])``; strings are cut to their column sizes."""
    keys = _KEY_SEP.join(k.replace(_KEY_SEP, "_") for k in patient_keys)
    app, facility, control_id = sender.key
    return {
        "received_at": now_us(),
        "peer": peer[:128],
        "sending_app": app,
        "sending_facility": facility,
        "control_id": control_id,
        "message_type": _text(sender.message_type)[:32],
        "payload_hash": digest,
        "status": status,
        "reason": None if reason is None else _text(reason),
        "patient_key": _text(keys)[:256] or None,
        "payload": payload,
        "ack": ack,
    }


async def find_accepted(conn: AsyncConnection, sender: Sender) -> tuple[str, bytes | None] | None:
    """(payload hash, ACK) of the accepted message with this duplicate key, if any."""
    c = inbox.c
    stmt = (
        select(c.payload_hash, c.ack)
        .where(tuple_(c.sending_app, c.sending_facility, c.control_id) == sender.key,
               c.status == ACCEPTED)
        .order_by(c.pk.desc())
        .limit(1)
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


_ACCEPTED_KEY_SQL = ("SELECT 1 FROM inbox WHERE sending_app = ? AND sending_facility = ? AND control_id = ?"
                     " AND status = ?")


def accepted_key_check(sender: Sender) -> tuple[str, list[str]]:
    """SQL and parameters that find a row when ``sender``'s key (MSH-3, MSH-4, MSH-10) was
    already accepted: for ``WriteTx.expect_empty``. One equality per key column, so SQLite
    probes ix_inbox_key (tests/gateway/unit/test_inbox_key_plan.py)."""
    return _ACCEPTED_KEY_SQL, [*sender.key, ACCEPTED]


def _select() -> Select[Any]:
    c = inbox.c
    return select(c.pk, c.received_at, c.peer, c.sending_app, c.sending_facility, c.control_id,
                  c.message_type, c.payload_hash, c.status, c.reason, c.patient_key, c.payload,
                  c.ack)


def _entry(row: Any) -> InboxEntry:
    keys = tuple(row[10].split(_KEY_SEP)) if row[10] else ()
    head = cast("tuple[int, int, str, str, str, str, str, str, str, str | None]", tuple(row[:10]))
    return InboxEntry(*head, keys, row[11], row[12])


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _patient_clause(patient: str) -> Any:
    """Patient keys are ``system|value`` joined by spaces in one column."""
    p = patient.replace(_KEY_SEP, "_")
    k, col = _like_escape(p), inbox.c.patient_key
    if "|" in p:
        return or_(col == p, col.like(f"{k} %", escape="\\"), col.like(f"% {k}", escape="\\"),
                   col.like(f"% {k} %", escape="\\"))
    return or_(col.like(f"%|{k}", escape="\\"), col.like(f"%|{k} %", escape="\\"))


async def list_entries(store: Store, *, status: str | None = None, sender: str | None = None,
                       control_id: str | None = None, patient: str | None = None,
                       limit: int = 50, before_pk: int | None = None) -> list[InboxEntry]:
    """Newest first. ``sender`` matches MSH-3 or MSH-4; ``patient`` one of the patient keys
    (``system|value``), or with no ``|`` an identifier value in any system."""
    c = inbox.c
    stmt = _select().order_by(c.pk.desc()).limit(limit)
    if status:
        stmt = stmt.where(c.status == status)
    if sender:
        stmt = stmt.where(or_(c.sending_app == sender, c.sending_facility == sender))
    if control_id:
        stmt = stmt.where(c.control_id == control_id)
    if patient:
        stmt = stmt.where(_patient_clause(patient))
    if before_pk is not None:
        stmt = stmt.where(c.pk < before_pk)
    return [_entry(r) for r in await store.fetch(stmt)]


async def get_entry(store: Store, pk: int) -> InboxEntry | None:
    row = (await store.fetch(_select().where(inbox.c.pk == pk))).first()
    return None if row is None else _entry(row)
