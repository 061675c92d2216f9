"""The duplicate lookup a write job needs, done once per write transaction for all its jobs.

Jobs of one group run one after the other in the same transaction. The first job to ask
looks up the accepted inbox row of every duplicate key (MSH-3, MSH-4, MSH-10) queued at that
moment (every job of a group was queued before its transaction began); the others read the
answers. Equal keys never share a transaction (the ingestor's per-key lock).

Reference-only resources (an ORU's sparse Patient / Encounter / Location, owned by ADT) need
no lookup here: the ingestor writes them with ``tx.put(..., if_absent=True)``, which the store
checks against the stored rows and the earlier writes of the same transaction.
"""

from __future__ import annotations

from fhir_server.storage import WriteTx
from gateway.inbox.records import Sender, find_accepted_many


class TxLookups:
    """Shared by all jobs of one ingestor; state resets with each new transaction."""

    def __init__(self) -> None:
        self.pending_senders: set[Sender] = set()
        self._tx: WriteTx | None = None
        self._asked: set[Sender] = set()
        self._dups: dict[Sender, tuple[str, bytes | None]] = {}

    def enqueue(self, sender: Sender) -> None:
        self.pending_senders.add(sender)

    def dequeue(self, sender: Sender) -> None:
        self.pending_senders.discard(sender)

    async def prepare(self, tx: WriteTx, sender: Sender) -> None:
        if self._tx is not tx:
            self._tx, self._asked = tx, set()
        if sender not in self._asked:
            self._asked = set(self.pending_senders) | {sender}
            self._dups = await find_accepted_many(tx.rows, self._asked)

    def duplicate(self, sender: Sender) -> tuple[str, bytes | None] | None:
        return self._dups.get(sender)
