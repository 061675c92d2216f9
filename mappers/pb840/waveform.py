"""PB840/980 waveform port (unsolicited, 38400 8N1, 50 Hz): breath framing and sample lines.

Each breath is ``BS, S:<n>,`` then one ``<flow>, <pressure>`` line per sample (flow L/min,
airway pressure cmH2O; OpenICE ``PB840Waveforms``), then ``BE``. Lines end in CR LF (CR or LF
alone are accepted). :class:`WaveformStream` is fed raw bytes as they arrive and hands back
complete one-second segments of (flow, pressure); a malformed line is counted and reported,
never fatal. Samples are parsed as one regular expression pass over the buffered text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["RATE_HZ", "WaveSegment", "WaveformStream"]

RATE_HZ = 50
MAX_LINE = 64
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)")
_SAMPLE = re.compile(rb"\s*([-+]?\d+(?:\.\d+)?)\s*,\s*([-+]?\d+(?:\.\d+)?)\s*,?\s*")
_BREATH_START = re.compile(rb"\s*BS\s*,\s*S:\s*(\d+)\s*,?\s*")
_BREATH_END = re.compile(rb"\s*BE\s*,?\s*")


@dataclass(frozen=True, slots=True)
class WaveSegment:
    """One second of samples (``RATE_HZ`` of them), ``index`` counting segments from the start."""

    index: int
    flow: list[float]
    pressure: list[float]


@dataclass
class WaveformStream:
    rate_hz: int = RATE_HZ
    breaths: int = 0
    bad_lines: list[bytes] = field(default_factory=list)
    _buffer: bytes = b""
    _flow: list[float] = field(default_factory=list)
    _pressure: list[float] = field(default_factory=list)
    _segments: int = 0

    def feed(self, data: bytes) -> list[WaveSegment]:
        """Add received bytes; return the one-second segments completed by them."""
        text = self._buffer + data
        end = 0
        out: list[WaveSegment] = []
        for m in _LINE.finditer(text):
            end = m.end()
            self._line(m.group().rstrip(b"\r\n"), out)
        self._buffer = text[end:]
        if len(self._buffer) > MAX_LINE:  # no line end in sight: garbage, drop it
            self.bad_lines.append(self._buffer[:MAX_LINE])
            self._buffer = b""
        return out

    def _line(self, line: bytes, out: list[WaveSegment]) -> None:
        if not line.strip():
            return
        m = _SAMPLE.fullmatch(line)
        if m is not None:
            self._flow.append(float(m[1]))
            self._pressure.append(float(m[2]))
            if len(self._flow) >= self.rate_hz:
                out.append(WaveSegment(self._segments, self._flow, self._pressure))
                self._segments += 1
                self._flow, self._pressure = [], []
            return
        if _BREATH_START.fullmatch(line):
            self.breaths += 1
        elif not _BREATH_END.fullmatch(line):
            self.bad_lines.append(line[:MAX_LINE])
