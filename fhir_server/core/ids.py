"""Server-assigned resource ids: UUID version 7 (RFC 9562), time-ordered.

Every index keyed by id (the resource table's primary key, reference rows to it) receives a
server-assigned id on each create. A random uuid4 lands each one on its own leaf page, so a
group commit of N creates dirties about N pages of each such index and writes them all to the
WAL; at a million stored resources those pages are also mostly out of cache. Ids that start
with the time append at one end of the index, as the MLLP ingest's ids already do
(``mappers.hl7v2.fields.timed_resource_id``).

Layout (RFC 9562 §5.7, with §6.2 method 1, a dedicated counter): 48-bit Unix milliseconds,
version, a 12-bit counter that keeps ids made within one millisecond in order, variant, and 62
bits drawn at random once per process (ids from two processes never collide in practice; the
counter carries into the time when a millisecond sees more than 4,096 ids). Ids are not
secrets: access control never rests on an id being unguessable.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["new_id"]

_lock = threading.Lock()
_node = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
_last_ms = 0
_counter = 0


def _reseed_after_fork() -> None:
    global _node
    _node = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)


os.register_at_fork(after_in_child=_reseed_after_fork)


def new_id() -> str:
    """A new time-ordered UUID (v7) string, increasing within this process."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, 0
        else:  # same millisecond, or the clock stepped back: keep counting from the last id
            _counter += 1
            if _counter > 0xFFF:
                _last_ms, _counter = _last_ms + 1, 0
        value = (_last_ms << 80) | (0x7 << 76) | (_counter << 64) | (0b10 << 62) | _node
    h = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, without building the UUID
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
