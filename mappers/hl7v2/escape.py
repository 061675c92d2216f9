"""HL7v2 escape sequences: decode (``unescape``) and encode (``escape``) text values.

Handled on decode: ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` (the message's own delimiters), ``\\P\\``
(the v2.7 truncation character), ``\\Xhh..\\`` (hex bytes, read as UTF-8, else Latin-1),
``\\.br\\`` and ``\\.sp\\`` (line break), ``\\H\\``/``\\N\\`` (highlighting, dropped).
Anything else between escape characters is kept verbatim, escape characters included,
so no input is ever lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Encoding:
    """The delimiters declared by MSH-1 and MSH-2 (``truncation`` is v2.7+, else ``""``)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def msh2(self) -> str:
        """The encoding characters as written in MSH-2."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


DEFAULT_ENCODING = Encoding()
_FORMATTING = {".br": "\n", ".sp": "\n", "H": "", "N": ""}


def unescape(value: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Decode the escape sequences in one raw (still escaped) value."""
    esc = enc.escape
    if not esc or esc not in value:
        return value
    out: list[str] = []
    pos = 0
    while True:
        start = value.find(esc, pos)
        end = value.find(esc, start + 1) if start >= 0 else -1
        if end < 0:
            out.append(value[pos:])
            return "".join(out)
        out.append(value[pos:start])
        out.append(_decode_sequence(value[start + 1 : end], enc))
        pos = end + 1


def _decode_sequence(seq: str, enc: Encoding) -> str:
    simple = {
        "F": enc.field,
        "S": enc.component,
        "T": enc.subcomponent,
        "R": enc.repetition,
        "E": enc.escape,
    }
    if seq in simple:
        return simple[seq]
    if seq == "P" and enc.truncation:
        return enc.truncation
    if seq in _FORMATTING:
        return _FORMATTING[seq]
    if seq[:1] == "X" and len(seq) > 1 and len(seq) % 2 == 1:
        decoded = _hex(seq[1:])
        if decoded is not None:
            return decoded
    return enc.escape + seq + enc.escape


def _hex(digits: str) -> str | None:
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def escape(value: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Encode ``value`` so it can be written into one HL7 field with these delimiters.

    Line breaks become ``\\.br\\`` and segment terminators can never appear in the output.
    """
    if _plain(value, enc):  # most values (control ids, versions) need nothing: no char loop
        return value
    e = enc.escape
    table = {
        enc.escape: f"{e}E{e}",
        enc.field: f"{e}F{e}",
        enc.component: f"{e}S{e}",
        enc.subcomponent: f"{e}T{e}",
        enc.repetition: f"{e}R{e}",
        "\r\n": f"{e}.br{e}",
        "\r": f"{e}.br{e}",
        "\n": f"{e}.br{e}",
    }
    if enc.truncation:
        table[enc.truncation] = f"{e}P{e}"
    out = []
    i = 0
    while i < len(value):
        if value.startswith("\r\n", i):
            out.append(table["\r\n"])
            i += 2
            continue
        ch = value[i]
        out.append(table.get(ch, ch))
        i += 1
    return "".join(out)


_SPECIALS: dict[Encoding, re.Pattern[str]] = {}


def _plain(value: str, enc: Encoding) -> bool:
    """True when ``value`` holds no delimiter, escape, truncation or line-break character."""
    found = _SPECIALS.get(enc)
    if found is None:
        chars = enc.escape + enc.field + enc.component + enc.subcomponent + enc.repetition + enc.truncation
        found = re.compile("[" + re.escape(chars + "\r\n") + "]")
        if len(_SPECIALS) < 64:  # bounded like the tokenizer's own cache of delimiters
            _SPECIALS[enc] = found
    return found.search(value) is None
