"""Bounded big-endian reading of Data Export structures, and the protocol's number types.

``Reader`` never reads past the end of its slice: a short or lying length raises
:class:`IntellivueDecodeError` naming what was being read, never an IndexError.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime
from sys import byteorder

from .nomenclature import FLOAT_SPECIAL

__all__ = ["IntellivueDecodeError", "Reader", "decode_float", "decode_abs_time", "u16_samples"]


class IntellivueDecodeError(ValueError):
    """A datagram that is not a well-formed Data Export message; ``reason`` is loggable."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


@dataclass
class Reader:
    data: bytes
    pos: int = 0
    end: int = -1

    def __post_init__(self) -> None:
        if self.end < 0:
            self.end = len(self.data)

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise IntellivueDecodeError(f"truncated {what}: need {n} bytes, {self.remaining} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        if self.pos + 2 > self.end:
            raise IntellivueDecodeError(f"truncated {what}: need 2 bytes, {self.remaining} left")
        (v,) = _U16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(v)

    def u32(self, what: str) -> int:
        if self.pos + 4 > self.end:
            raise IntellivueDecodeError(f"truncated {what}: need 4 bytes, {self.remaining} left")
        (v,) = _U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(v)

    def sub(self, length: int, what: str) -> Reader:
        """A reader over the next ``length`` bytes (which this reader skips)."""
        if length < 0 or self.pos + length > self.end:
            raise IntellivueDecodeError(f"{what} claims {length} bytes, only {self.remaining} left")
        child = Reader(self.data, self.pos, self.pos + length)
        self.pos += length
        return child

    def attribute_list(self, what: str) -> list[tuple[int, Reader]]:
        """AttributeList ``{count u16, length u16, AVAType{id u16, length u16, value}...}``."""
        count = self.u16(f"{what} count")
        body = self.sub(self.u16(f"{what} length"), what)
        out = []
        for _ in range(count):
            attr = body.u16(f"{what} attribute id")
            out.append((attr, body.sub(body.u16(f"{what} attribute {attr:#06x} length"),
                                       f"{what} attribute {attr:#06x}")))
        return out


def decode_float(raw: int) -> tuple[float | None, str | None]:
    """FLOAT-Type: 8-bit signed exponent (high byte), 24-bit signed mantissa; value = m * 10**e.

    Returns (value, None), or (None, name) for NaN / NRes / +INF / -INF / reserved.
    """
    special = FLOAT_SPECIAL.get(raw)
    if special is not None:
        return None, special
    exponent = raw >> 24
    if exponent >= 0x80:
        exponent -= 0x100
    mantissa = raw & 0xFFFFFF
    if mantissa >= 0x800000:
        mantissa -= 0x1000000
    if exponent >= 0:
        return float(mantissa * 10**exponent), None
    # divide (not multiply by 10**-n) so 985 * 10**-1 is exactly 98.5
    return mantissa / 10 ** (-exponent), None


def _bcd(byte: int) -> int:
    hi, lo = byte >> 4, byte & 0x0F
    if hi > 9 or lo > 9:
        raise IntellivueDecodeError(f"not BCD: {byte:#04x}")
    return hi * 10 + lo


def decode_abs_time(raw: bytes) -> datetime | None:
    """AbsoluteTime: 8 BCD bytes century, year, month, day, hour, minute, second, fraction.

    All 0xFF means "not set" (None). The monitor's clock carries no zone: read as UTC here,
    the caller decides the site zone.
    """
    if raw == b"\xff" * 8:
        return None
    c, y, mo, d, h, mi, s = (_bcd(b) for b in raw[:7])
    try:
        return datetime(c * 100 + y, mo, d, h, mi, s, _bcd(raw[7]) * 10_000, tzinfo=UTC)
    except ValueError as exc:
        raise IntellivueDecodeError(f"invalid absolute time: {exc}") from None


def u16_samples(raw: bytes) -> array[int]:
    """A sample array of 16-bit big-endian values, converted in one pass (never per value)."""
    if len(raw) % 2:
        raise IntellivueDecodeError("sample array of odd length")
    samples = array("H", raw)
    if byteorder == "little":
        samples.byteswap()
    return samples
