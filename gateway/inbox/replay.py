"""Replay of a dead letter for ``vitalgate inbox replay``: the pipeline runs again on purpose."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # gateway.mllp imports this package: no import cycle at run time
    from gateway.mllp.ingest import Ingestor, IngestResult


async def replay(ingestor: Ingestor, pk: int) -> IngestResult:
    """Re-run dead letter ``pk``; the old row becomes ``replayed`` with a link to the new row
    (``reason`` = ``replayed as inbox #N``) in the same transaction. LookupError if ``pk`` is
    not a dead letter."""
    return await ingestor.replay(pk)
