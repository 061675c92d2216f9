"""Server-assigned ids are RFC 9562 UUIDv7: time first, increasing, unique across processes."""

from __future__ import annotations

import multiprocessing
import time
import uuid

from fhir_server.core.ids import new_id


def _ids(n: int) -> list[str]:
    return [new_id() for _ in range(n)]


def test_ids_are_v7_carry_the_time_and_increase() -> None:
    before = time.time_ns() // 1_000_000
    ids = _ids(20_000)  # more than 4,096 a millisecond: the counter carries into the time
    after = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # string order is creation order
    assert before <= parsed[0].int >> 80 <= after
    assert (parsed[-1].int >> 80) - after <= 20_000 // 4096 + 1


def test_two_processes_never_share_an_id() -> None:
    # one task per worker process, each forked from this one: the random tail is re-drawn
    with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=1) as pool:
        a, b = pool.map(_ids, [5_000, 5_000], chunksize=1)
    assert not set(a) & set(b)
    assert len({i[-12:] for i in a + b}) == 2  # each process has its own random tail
