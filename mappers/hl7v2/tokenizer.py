"""Fast HL7v2 tokenizer: bytes or text to a ``Message`` of ``Segment``s.

Design (for the <= 15 us budget per 10-OBX ORU^R01): segments and fields are split eagerly
with ``str.split``; repetitions, components and sub-components are split only when asked
for. Values stay raw (still escaped); ``Segment.value`` and ``escape.unescape`` decode them.

Numbering follows HL7: ``seg[0]`` is the segment name, ``msh[1]`` is the field separator,
``msh[2]`` the encoding characters, ``msh[9]`` the message type (the same for FHS and BHS).

Segment ends may be ``\\r``, ``\\n`` or ``\\r\\n`` (normalised to ``\\r``); empty lines are
skipped. Character sets (MSH-18): pure-ASCII input is decoded directly (every supported
charset agrees on it); otherwise MSH-18 picks the codec (``8859/n``, ``UNICODE UTF-8``,
``ISO IR100``/``IR192``...; empty or ``ASCII`` means UTF-8, a superset that lets a sender
declaring ASCII but sending UTF-8 through). Bytes invalid for that codec raise
``HL7ParseError`` 102 by default: a patient name is never silently altered; pass
``errors="replace"`` to get U+FFFD instead.
"""

from __future__ import annotations

from collections.abc import Iterator

from .errors import DATA_TYPE_ERROR, SEGMENT_SEQUENCE_ERROR, TABLE_VALUE_NOT_FOUND, HL7ParseError
from .escape import Encoding, unescape

_HEADER_SEGMENTS = frozenset({"MSH", "FHS", "BHS"})
_BATCH_SEGMENTS = frozenset({"FHS", "BHS", "BTS", "FTS"})
# MSH-18 (HL7 table 0211) names -> Python codecs; all ASCII-compatible.
CHARSET_CODECS = {
    "": "utf-8",
    "ASCII": "utf-8",
    "ISO IR6": "utf-8",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "ISO IR192": "utf-8",
    "ISO IR100": "latin-1",
    "8859/1": "latin-1",
    **{f"8859/{n}": f"iso8859-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 15)},
}
_valid_names: set[str] = set()
_encodings: dict[str, Encoding] = {}


class Segment:
    """One segment: ``fields[0]`` is its name, ``fields[n]`` the raw text of field n."""

    __slots__ = ("name", "fields", "enc")

    def __init__(self, name: str, fields: list[str], enc: Encoding) -> None:
        self.name = name
        self.fields = fields
        self.enc = enc

    def __getitem__(self, n: int) -> str:
        """Raw field ``n`` (``""`` when absent)."""
        fields = self.fields
        return fields[n] if 0 <= n < len(fields) else ""

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        fields = self.fields[:1] + self.fields[2:] if self.name in _HEADER_SEGMENTS else self.fields
        return f"Segment({self.enc.field.join(fields)!r})"

    def repetitions(self, n: int) -> list[str]:
        """Raw repetitions of field ``n`` (``[]`` when the field is empty)."""
        raw = self[n]
        if not raw:
            return []
        if self.name in _HEADER_SEGMENTS and n <= 2:
            return [raw]
        return raw.split(self.enc.repetition)

    def get(self, n: int, comp: int = 0, sub: int = 0, rep: int = 1) -> str:
        """Raw field ``n``, repetition ``rep``, component ``comp``, sub-component ``sub``.

        All 1-based as in HL7; ``comp=0`` / ``sub=0`` mean the whole repetition / component.
        """
        fields = self.fields
        if not 0 <= n < len(fields):
            return ""
        raw = fields[n]
        if not raw or (n <= 2 and self.name in _HEADER_SEGMENTS):
            return raw
        enc = self.enc
        if enc.repetition in raw:
            reps = raw.split(enc.repetition)
            raw = reps[rep - 1] if rep <= len(reps) else ""
        elif rep != 1:
            return ""
        if not comp:
            return raw
        if enc.component in raw:
            parts = raw.split(enc.component)
            raw = parts[comp - 1] if comp <= len(parts) else ""
        elif comp != 1:
            return ""
        if sub:
            raw = _nth(raw, enc.subcomponent, sub)
        return raw

    def components(self, n: int, rep: int = 1) -> list[str]:
        """Raw components of one repetition of field ``n``."""
        return self.get(n, rep=rep).split(self.enc.component)

    def value(self, n: int, comp: int = 0, sub: int = 0, rep: int = 1) -> str:
        """Like ``get`` but with escape sequences decoded."""
        return unescape(self.get(n, comp, sub, rep), self.enc)


def _nth(raw: str, sep: str, n: int) -> str:
    if sep not in raw:
        return raw if n == 1 else ""
    parts = raw.split(sep)
    return parts[n - 1] if n <= len(parts) else ""


class Message:
    """A parsed message: its segments in order and its delimiters."""

    __slots__ = ("segments", "enc")

    def __init__(self, segments: list[Segment], enc: Encoding) -> None:
        self.segments = segments
        self.enc = enc

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def segment(self, name: str) -> Segment | None:
        """The first segment called ``name``, or None."""
        for seg in self.segments:
            if seg.name == name:
                return seg
        return None

    def all(self, name: str) -> list[Segment]:
        return [seg for seg in self.segments if seg.name == name]

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    def __len__(self) -> int:
        return len(self.segments)


def parse(data: bytes | str, *, errors: str = "strict") -> Message:
    """Parse one message that starts with MSH. Raises ``HL7ParseError``."""
    lines = _lines(_text(data, errors))
    if not lines or not lines[0].startswith("MSH"):
        found = lines[0][:3] if lines else "nothing"
        raise HL7ParseError(SEGMENT_SEQUENCE_ERROR, f"message must start with MSH, not {found!r}",
                            "MSH^1")
    enc = read_encoding(lines[0])
    return Message(_segments(lines, enc, 0, len(lines)), enc)


def parse_batch(data: bytes | str, *, errors: str = "strict") -> list[Message]:
    """Parse a batch (optional FHS/BHS ... BTS/FTS wrappers) or a run of messages.

    Every segment must belong to a message started by MSH, except the batch wrappers.
    """
    lines = _lines(_text(data, errors))
    if not lines:
        raise HL7ParseError(SEGMENT_SEQUENCE_ERROR, "empty batch", None)
    messages: list[Message] = []
    start = -1
    for i, line in enumerate(lines):
        name = line[:3]
        if name == "MSH" or name in _BATCH_SEGMENTS:
            if start >= 0:
                messages.append(_message(lines, start, i))
            start = i if name == "MSH" else -1
            if name != "MSH":
                _check_wrapper(line)
        elif start < 0:
            raise HL7ParseError(SEGMENT_SEQUENCE_ERROR, f"segment {name!r} outside a message "
                                "(MSH missing)", f"{name}^1")
    if start >= 0:
        messages.append(_message(lines, start, len(lines)))
    return messages


def _message(lines: list[str], start: int, end: int) -> Message:
    enc = read_encoding(lines[start])
    return Message(_segments(lines, enc, start, end), enc)


def _check_wrapper(line: str) -> None:
    """FHS/BHS need valid delimiters; BTS/FTS need a delimiter (or nothing) after the name."""
    name = line[:3]
    if name in _HEADER_SEGMENTS:
        read_encoding(line)
    elif len(line) > 3 and not line[3].isalnum() and line[3] not in " \t":
        return
    elif len(line) != 3:
        raise HL7ParseError(SEGMENT_SEQUENCE_ERROR, f"malformed {name} segment", f"{name}^1")


def _text(data: bytes | str, errors: str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        pass
    charset = sniff_charset(data)
    codec = CHARSET_CODECS.get(charset.upper())
    if codec is None:
        raise HL7ParseError(TABLE_VALUE_NOT_FOUND, f"unsupported character set {charset!r}",
                            "MSH^1^18")
    try:
        return data.decode(codec, errors)
    except UnicodeDecodeError as exc:
        raise HL7ParseError(DATA_TYPE_ERROR, f"byte {exc.start} is not valid {codec} "
                            f"(MSH-18 {charset!r})", "MSH^1^18") from None


def sniff_charset(data: bytes) -> str:
    """MSH-18 (first repetition) read straight from the bytes, ``""`` when absent."""
    at = data.find(b"MSH")
    if at < 0 or len(data) < at + 8:
        return ""
    end = len(data)
    for term in (b"\r", b"\n"):
        pos = data.find(term, at)
        if 0 <= pos < end:
            end = pos
    fs = data[at + 3 : at + 4]
    parts = data[at:end].split(fs)
    if len(parts) < 18:
        return ""
    rep = parts[1][1:2] or b"~"
    return parts[17].split(rep)[0].decode("latin-1").strip()


def _lines(text: str) -> list[str]:
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    lines = text.split("\r")
    if lines and not lines[-1]:
        lines.pop()
    if "" in lines:
        lines = [line for line in lines if line]
    return lines


def read_encoding(line: str) -> Encoding:
    """Delimiters from a header segment's first characters (MSH, FHS or BHS)."""
    name = line[:3]
    if len(line) < 8:
        raise HL7ParseError(SEGMENT_SEQUENCE_ERROR, f"{name} segment too short", f"{name}^1^2")
    fs = line[3]
    end = line.find(fs, 4)
    chars = line[4:] if end < 0 else line[4:end]
    cached = _encodings.get(fs + chars)
    if cached is not None:
        return cached
    if not 4 <= len(chars) <= 5 or not _usable(fs + chars):
        raise HL7ParseError(DATA_TYPE_ERROR, f"invalid encoding characters {chars!r}",
                            f"{name}^1^2")
    enc = Encoding(fs, chars[0], chars[1], chars[2], chars[3], chars[4:5])
    if len(_encodings) < 64:  # bounded: hostile input must not grow it without limit
        _encodings[fs + chars] = enc
    return enc


def _usable(delims: str) -> bool:
    if len(set(delims)) != len(delims):
        return False
    return not any(c.isalnum() or c.isspace() or not c.isprintable() for c in delims)


def _segments(lines: list[str], enc: Encoding, start: int, end: int) -> list[Segment]:
    fs = enc.field
    segments = []
    valid = _valid_names
    for i in range(start, end):
        fields = lines[i].split(fs)
        name = fields[0]
        if name in _HEADER_SEGMENTS:
            fields.insert(1, fs)
        elif name not in valid:
            _check_name(name, i)
        segments.append(Segment(name, fields, enc))
    return segments


def _check_name(name: str, index: int) -> None:
    if len(name) == 3 and name.isascii() and name.isalnum() and name.upper() == name:
        _valid_names.add(name)
        return
    raise HL7ParseError(SEGMENT_SEQUENCE_ERROR, f"invalid segment name {name[:10]!r} "
                        f"(segment {index + 1})", None)
