"""The ingest pipeline for one MLLP frame: parse, check, deduplicate, map, commit, then ACK.

Contract (docs/ARCHITECTURE.md, "Acknowledgements (MLLP)"):

- accepted: the mapped resources and the inbox row (status ``accepted``, holding the ACK
  bytes) are written by ONE store job; the ACK (AA, or CA in enhanced mode) is returned only
  once that transaction is durable. Nothing happens after the ACK.
- refused (unreadable MSH, unsupported type / event / version / processing ID): AR (CR)
  with ERR; the raw payload is committed as a dead letter first.
- failed (unparseable body, unmappable, store failure): AE (CE) with ERR, dead letter
  first; the sender may retry.
- duplicate key (MSH-3, MSH-4, MSH-10) of an accepted message: same payload hash, the
  stored ACK again and nothing stored; different payload, AE with ERR 205 and a dead letter.
  The check runs inside the write transaction (``WriteTx.expect_empty``, in the commit's own
  call), so it is serialised with the writes; messages with the same key never share a
  transaction because this process holds a per-key lock.

Logs carry control IDs and peers, never patient data.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fhir_server.errors import PreconditionFailed
from fhir_server.storage import Store, WriteTx
from gateway.devices.index_rows import DeviceIndexer
from gateway.inbox.records import (
    ACCEPTED,
    DEAD,
    REPLAYED,
    Sender,
    accepted_key_check,
    find_accepted,
    get_entry,
    inbox_row,
)
from gateway.inbox.schema import inbox
from mappers.hl7v2 import (
    REJECT_CODES,
    HL7Error,
    HL7ParseError,
    MappingContext,
    MappingResult,
    MessageHeader,
    accept_ack_code,
    build_ack,
    check_acceptable,
    map_message,
    parse,
    read_header_lenient,
)
from mappers.hl7v2.errors import (
    APPLICATION_INTERNAL_ERROR,
    DUPLICATE_KEY_IDENTIFIER,
    SEGMENT_SEQUENCE_ERROR,
)

from .senders import SenderRule, sender_allowed

log = logging.getLogger(__name__)
# duplicate keys this ingestor accepted lately (about 40 s at 500 messages a second): a resend, or
# a sender that reuses control IDs, is answered from the inbox instead of failing the check in the
# commit, which would commit every other message of its group one by one
_RECENT_KEYS = 20_000
Outcome = Literal["accept", "error", "reject"]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What happened to one frame; ``ack`` is None when nothing is to be sent back."""

    outcome: Outcome
    ack: bytes | None
    status: str  # accepted | dead | duplicate | lost (not even a dead letter could be written)
    reason: str | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _sender(h: MessageHeader) -> Sender:
    mtype = f"{h.message_type}^{h.trigger_event}" if h.trigger_event else h.message_type
    return Sender(h.sending_app, h.sending_facility, h.control_id, mtype)


class _KeyLocks:
    """In-process locks per duplicate key: equal keys are processed one after the other."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: tuple[str, str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Ingestor:
    """Runs the pipeline for frames of any connection; one instance per process."""

    def __init__(self, store: Store, ctx: MappingContext, *,
                 clock: Callable[[], datetime] = _utcnow,
                 allowed_senders: tuple[SenderRule, ...] = ()) -> None:
        self.store = store
        self.ctx = ctx
        self.clock = clock
        self.allowed_senders = allowed_senders  # MSH-3 / MSH-4 rules; empty = any sender
        self._locks = _KeyLocks()
        self._accepted: OrderedDict[tuple[str, str, str], None] = OrderedDict()  # newest last
        # ACK control ids (MSH-10, 20 characters): a random prefix per process, then a
        # counter; a uuid4 per ACK cost ~12 us (os.urandom) on the hot path
        self._ack_prefix, self._ack_count = secrets.token_hex(6), itertools.count()
        # the store's rows, an Observation series' fixed rows (patient, code, status, category)
        # extracted once: a monitor sends the same series every few seconds
        self._indexer = DeviceIndexer(store.indexer, vendor_rows=True)

    async def ingest(self, payload: bytes, peer: str = "", *, replay_of: int | None = None) -> IngestResult:
        """Run one frame through the pipeline; never raises for bad input."""
        digest = hashlib.sha256(payload).hexdigest()
        header = read_header_lenient(payload)
        if header is None:
            err = HL7Error(SEGMENT_SEQUENCE_ERROR, "no readable MSH segment", "MSH^1")
            return await self._dead(payload, digest, MessageHeader(), peer, "reject", err, replay_of)
        async with self._locks.hold(_sender(header).key):
            try:
                return await self._pipeline(payload, digest, header, peer, replay_of)
            except Exception:  # a bug must cost an AE, never the connection or the message
                log.exception("mllp %s: internal error on control id %r", peer, header.control_id)
                err = HL7Error(APPLICATION_INTERNAL_ERROR, "internal error")
                return await self._dead(payload, digest, header, peer, "error", err, replay_of)

    async def _pipeline(self, payload: bytes, digest: str, header: MessageHeader, peer: str,
                        replay_of: int | None) -> IngestResult:
        if self.store.writer_starting():  # let it take the queued jobs before this one is mapped
            await asyncio.sleep(0)
        if not sender_allowed(header.sending_app, header.sending_facility, self.allowed_senders):
            err = HL7Error(APPLICATION_INTERNAL_ERROR, "sending application/facility not allowed",
                           "MSH^1^3")
            return await self._dead(payload, digest, header, peer, "reject", err, replay_of)
        try:
            check_acceptable(header, self.ctx)
            msg = parse(payload)
        except HL7Error as err:
            refused = not isinstance(err, HL7ParseError) or (err.location or "").startswith("MSH")
            outcome: Outcome = "reject" if refused else "error"
            return await self._dead(payload, digest, header, peer, outcome, err, replay_of)
        try:
            result = map_message(msg, self.ctx)
        except HL7Error as err:
            if err.code in REJECT_CODES:
                return await self._dead(payload, digest, header, peer, "reject", err, replay_of)
            if not replay_of and (resent := await self._resent(payload, digest, header, peer)) is not None:
                return resent
            return await self._dead(payload, digest, header, peer, "error", err, replay_of)
        return await self._commit(payload, digest, header, peer, result, replay_of)

    async def _resent(self, payload: bytes, digest: str, header: MessageHeader, peer: str) -> IngestResult | None:
        """The answer to a resent key (the stored ACK, or AE 205), None if the key was not accepted.

        Read outside the writer, under the key's lock; asked when mapping failed, when this ingestor
        accepted the key lately, or when the commit's check found it."""
        async with self.store.engine.connect() as conn:
            found = await find_accepted(conn, _sender(header))
        return None if found is None else await self._answer_duplicate(payload, digest, header, peer, found)

    async def _commit(self, payload: bytes, digest: str, header: MessageHeader, peer: str,
                      result: MappingResult, replay_of: int | None) -> IngestResult:
        resources, patient_keys = result.resources, list(result.patient_keys)
        refs = result.reference_only  # ADT owns these: written only when absent (if_absent)
        sender = _sender(header)
        key = sender.key
        if (replay_of is None and key in self._accepted
                and (resent := await self._resent(payload, digest, header, peer)) is not None):
            return resent
        code = accept_ack_code(header, "accept")
        ack = self._ack(header, code or "CA", None)
        # JSON and index rows now, while the writer commits another group; reference-only
        # resources are usually skipped (if_absent), so they are left to the flush
        puts = [(res["resourceType"], res["id"], res, f"{res['resourceType']}/{res['id']}" in refs)
                for res in resources]
        prepared = [None if absent else self._indexer.prepare(res) for _, _, res, absent in puts]

        async def job(tx: WriteTx) -> None:
            if replay_of is None:  # a resent key fails the transaction: answered below
                tx.expect_empty(*accepted_key_check(sender))
            for (type_, id_, res, absent), ready in zip(puts, prepared, strict=True):
                tx.put(type_, id_, res, method="PUT", if_absent=absent, prepared=ready)
            row = inbox_row(payload=payload, digest=digest, sender=sender, peer=peer,
                            status=ACCEPTED, ack=ack, patient_keys=patient_keys)
            await self._insert(tx, row, replay_of)

        try:
            await self.store.write(job)
        except PreconditionFailed:
            # Accepted before (a resend): the key's lock is still ours, so the row read now is the
            # one that failed the check. Rare, hence checked in the commit's call, not a read of its own.
            if (resent := await self._resent(payload, digest, header, peer)) is not None:
                return resent
            log.error("mllp %s: duplicate check failed for control id %r, no accepted row found", peer,
                      header.control_id)
            err = HL7Error(APPLICATION_INTERNAL_ERROR, "could not store the message")
            return await self._dead(payload, digest, header, peer, "error", err, replay_of)
        except Exception as exc:  # noqa: BLE001 - the store failed: AE, the sender may retry
            log.error("mllp %s: store failed for control id %r: %s", peer, header.control_id, exc)
            err = HL7Error(APPLICATION_INTERNAL_ERROR, "could not store the message")
            return await self._dead(payload, digest, header, peer, "error", err, replay_of)
        self._accepted[key] = None
        if len(self._accepted) > _RECENT_KEYS:
            self._accepted.popitem(last=False)
        # DEBUG: a line per accepted message is noise (and cost) at hundreds a second;
        # refusals, duplicates and dead letters stay visible
        log.debug("mllp %s: accepted control id %r (%d resources)", peer, header.control_id,
                  len(resources))
        return IngestResult("accept", ack if code else None, ACCEPTED)

    async def _answer_duplicate(self, payload: bytes, digest: str, header: MessageHeader,
                                peer: str, found: tuple[str, bytes | None]) -> IngestResult:
        stored_hash, stored_ack = found
        if stored_hash == digest:
            log.info("mllp %s: duplicate control id %r, stored ACK sent again", peer,
                     header.control_id)
            due = accept_ack_code(header, "accept") is not None
            return IngestResult("accept", stored_ack if due else None, "duplicate")
        err = HL7Error(DUPLICATE_KEY_IDENTIFIER,
                       f"control id {header.control_id} already used for another message",
                       "MSH^1^10")
        return await self._dead(payload, digest, header, peer, "error", err, None)

    async def _dead(self, payload: bytes, digest: str, header: MessageHeader, peer: str,
                    outcome: Outcome, err: HL7Error, replay_of: int | None) -> IngestResult:
        """Commit the payload as a dead letter, then return the NAK (if one is due)."""
        code = accept_ack_code(header, outcome)
        ack = self._ack(header, code or ("CR" if outcome == "reject" else "CE"), err)
        reason = f"{err.code} {err.code_text}: {err.text}"
        if err.location:
            reason += f" (at {err.location})"
        row = inbox_row(payload=payload, digest=digest, sender=_sender(header), peer=peer,
                        status=DEAD, ack=ack, reason=reason)

        async def job(tx: WriteTx) -> None:
            await self._insert(tx, row, replay_of)

        try:
            await self.store.write(job)
        except Exception as exc:  # noqa: BLE001 - still answer: the NAK tells the sender to keep it
            log.error("mllp %s: dead letter for control id %r not stored: %s", peer,
                      header.control_id, exc)
            return IngestResult(outcome, ack if code else None, "lost", reason)
        log.warning("mllp %s: %s control id %r: error %d", peer, outcome, header.control_id,
                    err.code)
        return IngestResult(outcome, ack if code else None, DEAD, reason)

    async def oversized(self, head: bytes, size: int, peer: str = "") -> IngestResult:
        """A frame over the size limit: dead letter of its head, AR when an MSH is readable."""
        header = read_header_lenient(head)
        err = HL7Error(APPLICATION_INTERNAL_ERROR, f"frame of more than {len(head)} bytes refused")
        digest = hashlib.sha256(head).hexdigest()
        result = await self._dead(head, digest, header or MessageHeader(), peer, "reject", err,
                                  None)
        return result if header is not None else IngestResult("reject", None, result.status,
                                                              result.reason)

    async def replay(self, pk: int) -> IngestResult:
        """Run dead letter ``pk`` through the pipeline again (no duplicate check); the old row
        becomes ``replayed`` in the same transaction as the new outcome's row."""
        entry = await get_entry(self.store, pk)
        if entry is None or entry.status != DEAD:
            raise LookupError(f"inbox #{pk} is not a dead letter")
        return await self.ingest(entry.payload, entry.peer, replay_of=pk)

    def _ack(self, header: MessageHeader, code: str, err: HL7Error | None) -> bytes:
        control_id = f"{self._ack_prefix}{next(self._ack_count) & 0xFFFFFFFF:08x}"
        return build_ack(header, code, error=err, now=self.clock(), control_id=control_id)

    async def _insert(self, tx: WriteTx, row: dict[str, Any], replay_of: int | None) -> None:
        if replay_of is None:
            tx.insert(inbox, [row])
            return
        # raw SQL through tx.rows: the transaction may live in the SQLite writer's process
        cols = list(row)
        ((new_pk,),) = await tx.rows(
            f"INSERT INTO {inbox.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) RETURNING pk",
            [row[c] for c in cols])
        await tx.rows(f"UPDATE {inbox.name} SET status = ?, reason = coalesce(reason, '') || ? WHERE pk = ?",
                      [REPLAYED, f" | replayed as inbox #{new_pk}", replay_of])
