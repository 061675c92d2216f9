"""Property: whatever the TCP segmentation, the frames come out exactly as sent."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mllp.framing import Frame, FrameReader, Oversized, frame

payload = st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))
garbage = st.binary(max_size=20).map(lambda b: b.replace(b"\x0b", b""))


async def read_in_chunks(data: bytes, cuts: list[int], max_frame: int, limit: int) -> list[object]:
    r = asyncio.StreamReader(limit=limit)
    fr = FrameReader(r, max_frame=max_frame)
    out: list[object] = []

    async def consume() -> None:
        while (item := await fr.next()) is not None:
            out.append(item)
            if isinstance(item, Oversized):
                return

    task = asyncio.ensure_future(consume())
    last = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]:
        r.feed_data(data[last:cut])
        last = cut
        await asyncio.sleep(0)
    r.feed_eof()
    await task
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(garbage, payload), max_size=6), st.lists(st.integers(0, 5000)),
       st.sampled_from([64, 128, 4096]))
def test_frames_survive_any_segmentation(items, cuts, limit) -> None:
    data = b"".join(g + frame(p) for g, p in items)
    got = asyncio.run(read_in_chunks(data, cuts, max_frame=10_000, limit=limit))
    assert got == [Frame(p) for _, p in items]


@settings(max_examples=100, deadline=None)
@given(st.lists(payload, min_size=1, max_size=4), st.lists(st.integers(0, 5000)))
def test_first_frame_over_the_limit_is_reported_oversized(payloads, cuts) -> None:
    limit = 100
    data = b"".join(frame(p) for p in payloads)
    got = asyncio.run(read_in_chunks(data, cuts, max_frame=limit, limit=64))
    first_big = next((i for i, p in enumerate(payloads) if len(p) > limit), None)
    if first_big is None:
        assert got == [Frame(p) for p in payloads]
    else:
        assert got[:first_big] == [Frame(p) for p in payloads[:first_big]]
        big = got[first_big]
        assert isinstance(big, Oversized) and big.head == payloads[first_big][:limit]
