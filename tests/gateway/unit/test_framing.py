"""MLLP framing over an ``asyncio.StreamReader`` fed by hand (no sockets)."""

from __future__ import annotations

import asyncio

from gateway.mllp.framing import Frame, FrameReader, Oversized, frame

MSG_A = b"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\rPID|1\r"
MSG_B = b"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|2|P|2.5\r"


def reader_of(*chunks: bytes, limit: int = 2**16) -> asyncio.StreamReader:
    r = asyncio.StreamReader(limit=limit)
    for c in chunks:
        r.feed_data(c)
    r.feed_eof()
    return r


async def read_all(fr: FrameReader) -> list[Frame | Oversized]:
    out: list[Frame | Oversized] = []
    while (item := await fr.next()) is not None:
        out.append(item)
    return out


async def test_one_frame() -> None:
    fr = FrameReader(reader_of(b"\x0b" + MSG_A + b"\x1c\x0d"))
    assert await read_all(fr) == [Frame(MSG_A)]
    assert fr.skipped == 0


async def test_frame_helper_wraps_payload() -> None:
    assert frame(b"X") == b"\x0bX\x1c\x0d"


async def test_several_frames_in_one_read() -> None:
    fr = FrameReader(reader_of(frame(MSG_A) + frame(MSG_B) + frame(MSG_A)))
    assert await read_all(fr) == [Frame(MSG_A), Frame(MSG_B), Frame(MSG_A)]


async def test_frame_split_across_reads_at_every_offset() -> None:
    data = frame(MSG_A) + frame(MSG_B)
    for cut in range(1, len(data)):
        r = asyncio.StreamReader()
        fr = FrameReader(r)
        first = asyncio.ensure_future(fr.next())
        r.feed_data(data[:cut])
        await asyncio.sleep(0)
        r.feed_data(data[cut:])
        r.feed_eof()
        assert await first == Frame(MSG_A), cut
        assert await fr.next() == Frame(MSG_B), cut
        assert await fr.next() is None


async def test_byte_by_byte() -> None:
    r = asyncio.StreamReader()
    fr = FrameReader(r)
    task = asyncio.ensure_future(read_all(fr))
    for b in frame(MSG_A):
        r.feed_data(bytes([b]))
        await asyncio.sleep(0)
    r.feed_eof()
    assert await task == [Frame(MSG_A)]


async def test_bytes_outside_frames_are_skipped_and_counted() -> None:
    fr = FrameReader(reader_of(b"garbage", frame(MSG_A), b"\r\n", frame(MSG_B), b"tail"))
    assert await read_all(fr) == [Frame(MSG_A), Frame(MSG_B)]
    assert fr.skipped == len(b"garbage") + 2 + len(b"tail")


async def test_missing_vt_frame_is_skipped_and_next_frame_read() -> None:
    # the first message lost its VT: it is outside any frame
    fr = FrameReader(reader_of(MSG_A + b"\x1c\x0d" + frame(MSG_B)))
    assert await read_all(fr) == [Frame(MSG_B)]
    assert fr.skipped == len(MSG_A) + 2


async def test_frame_without_end_restarts_at_next_vt() -> None:
    fr = FrameReader(reader_of(b"\x0b" + MSG_A + frame(MSG_B)))
    assert await read_all(fr) == [Frame(MSG_B)]
    assert fr.skipped == len(MSG_A)


async def test_garbage_larger_than_stream_limit() -> None:
    fr = FrameReader(reader_of(b"x" * 5000, frame(MSG_A), limit=256))
    assert await read_all(fr) == [Frame(MSG_A)]
    assert fr.skipped == 5000


async def test_frame_larger_than_small_stream_limit() -> None:
    big = MSG_A + b"OBX|" + b"9" * 3000 + b"\r"
    fr = FrameReader(reader_of(frame(big), frame(MSG_B), limit=256), max_frame=10_000)
    assert await read_all(fr) == [Frame(big), Frame(MSG_B)]


async def test_oversized_frame_keeps_its_head() -> None:
    big = MSG_A + b"OBX|" + b"9" * 3000 + b"\r"
    fr = FrameReader(reader_of(frame(big), frame(MSG_B), limit=512), max_frame=1000)
    item = await fr.next()
    assert isinstance(item, Oversized)
    assert item.head == big[:1000]
    assert item.size_seen > 1000


async def test_oversized_when_separator_found_within_stream_limit() -> None:
    big = MSG_A + b"9" * 200
    fr = FrameReader(reader_of(frame(big)), max_frame=100)
    item = await fr.next()
    assert item == Oversized(big[:100], len(big))


async def test_end_of_stream_mid_frame_discards_partial() -> None:
    fr = FrameReader(reader_of(frame(MSG_A) + b"\x0b" + MSG_B[:10]))
    assert await read_all(fr) == [Frame(MSG_A)]
    assert fr.skipped == 10


async def test_fs_without_cr_stays_in_payload_until_a_real_end() -> None:
    # 0x1C alone is not an end; the frame ends at 0x1C 0x0D
    fr = FrameReader(reader_of(b"\x0bAB\x1cCD\x1c\x0d"))
    assert await read_all(fr) == [Frame(b"AB\x1cCD")]


async def test_empty_stream() -> None:
    assert await FrameReader(reader_of()).next() is None


async def test_idle_timeout_is_the_callers() -> None:
    r = asyncio.StreamReader()
    fr = FrameReader(r)
    r.feed_data(b"\x0bMSH|")  # a half-open peer: a frame started, then silence
    try:
        async with asyncio.timeout(0.05):
            await fr.next()
    except TimeoutError:
        timed_out = True
    else:
        timed_out = False
    assert timed_out
