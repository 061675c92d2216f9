"""Reads a write job needs, done once per write transaction for every job waiting for it.

Jobs of one group run one after the other in the same transaction. The first job to ask
looks up everything the queued jobs will ask (every job of a group was queued before its
transaction began); the others read the answers. Two lookups:

- duplicates: the accepted inbox row for each duplicate key (MSH-3, MSH-4, MSH-10); equal
  keys never share a transaction (the ingestor's per-key lock);
- reference-only resources (an ORU's sparse Patient / Encounter / Location, owned by ADT):
  written only when absent from the store and not written earlier in the same transaction,
  so an ORU never overwrites what an ADT message wrote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir_server.storage import WriteTx
from fhir_server.storage import schema as storage_schema
from gateway.inbox.records import Sender, find_accepted_many

_CHUNK = 300


async def _existing(conn: AsyncConnection, refs: Iterable[str]) -> set[str]:
    """Which ``Type/id`` exist (not deleted) in the store."""
    r = storage_schema.resource.c
    keys = [tuple(ref.split("/", 1)) for ref in refs]
    found: set[str] = set()
    for i in range(0, len(keys), _CHUNK):
        stmt = select(r.type, r.id).where(tuple_(r.type, r.id).in_(keys[i : i + _CHUNK]),
                                          r.deleted.is_(False))
        found.update(f"{t}/{i_}" for t, i_ in await conn.execute(stmt))
    return found


class TxLookups:
    """Shared by all jobs of one ingestor; state resets with each new transaction."""

    def __init__(self) -> None:
        self.pending_senders: set[Sender] = set()
        self.pending_refs: Counter[str] = Counter()
        self._tx: WriteTx | None = None
        self._asked: set[Sender] = set()
        self._asked_refs: set[str] = set()
        self._dups: dict[Sender, tuple[str, bytes | None]] = {}
        self._existing: set[str] = set()
        self._written: set[str] = set()

    def enqueue(self, sender: Sender, refs: frozenset[str]) -> None:
        self.pending_senders.add(sender)
        self.pending_refs.update(refs)

    def dequeue(self, sender: Sender, refs: frozenset[str]) -> None:
        self.pending_senders.discard(sender)
        self.pending_refs.subtract(refs)
        for ref in refs:
            if self.pending_refs[ref] <= 0:
                del self.pending_refs[ref]

    async def prepare(self, tx: WriteTx, sender: Sender | None, refs: frozenset[str]) -> None:
        if self._tx is not tx:
            self._tx, self._written = tx, set()
            self._asked, self._asked_refs = set(), set()
        if sender is not None and sender not in self._asked:
            self._asked = set(self.pending_senders) | {sender}
            self._dups = await find_accepted_many(tx.conn, self._asked)
        if not refs <= self._asked_refs:
            self._asked_refs = set(self.pending_refs) | refs
            self._existing = await _existing(tx.conn, self._asked_refs)

    def duplicate(self, sender: Sender) -> tuple[str, bytes | None] | None:
        return self._dups.get(sender)

    def claim(self, ref: str, reference_only: bool) -> bool:
        """Whether this job writes ``ref``; records the write for later jobs of the tx."""
        if reference_only and (ref in self._existing or ref in self._written):
            return False
        self._written.add(ref)
        return True
