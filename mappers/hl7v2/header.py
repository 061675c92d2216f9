"""MSH read into a ``MessageHeader``, strictly from a parsed message or leniently from bytes.

Values are kept raw (still escaped, components joined with the inbound component separator)
because their main use is echoing them back in an ACK with the same delimiters.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import HL7ParseError
from .escape import DEFAULT_ENCODING, Encoding
from .tokenizer import Message, Segment, read_encoding


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """What an ACK and the acceptance checks need from MSH (raw field text)."""

    sending_app: str = ""  # MSH-3
    sending_facility: str = ""  # MSH-4
    receiving_app: str = ""  # MSH-5
    receiving_facility: str = ""  # MSH-6
    timestamp: str = ""  # MSH-7, as sent
    message_type: str = ""  # MSH-9.1
    trigger_event: str = ""  # MSH-9.2
    structure: str = ""  # MSH-9.3
    control_id: str = ""  # MSH-10
    processing_id: str = ""  # MSH-11.1
    version: str = ""  # MSH-12.1
    accept_ack_type: str = ""  # MSH-15
    app_ack_type: str = ""  # MSH-16
    charset: str = ""  # MSH-18, first repetition
    encoding: Encoding = DEFAULT_ENCODING

    @property
    def enhanced_mode(self) -> bool:
        """True when MSH-15 or MSH-16 asks for enhanced acknowledgement."""
        return bool(self.accept_ack_type or self.app_ack_type)


_last: tuple[Segment | None, MessageHeader] = (None, MessageHeader())


def read_header(msg: Message) -> MessageHeader:
    """Header of a parsed message (the first segment is always MSH). The last MSH read is
    remembered: the dispatch and then the mapper ask for the same message's header."""
    global _last
    msh = msg.msh
    seen, header = _last
    if seen is not msh:
        header = _from_segment(msh)
        _last = (msh, header)
    return header


def _from_segment(msh: Segment) -> MessageHeader:
    return MessageHeader(
        sending_app=msh[3],
        sending_facility=msh[4],
        receiving_app=msh[5],
        receiving_facility=msh[6],
        timestamp=msh.get(7, 1),
        message_type=msh.get(9, 1),
        trigger_event=msh.get(9, 2),
        structure=msh.get(9, 3),
        control_id=msh[10],
        processing_id=msh.get(11, 1),
        version=msh.get(12, 1),
        accept_ack_type=msh[15],
        app_ack_type=msh[16],
        charset=msh.get(18, rep=1),
        encoding=msh.enc,
    )


def read_header_lenient(data: bytes) -> MessageHeader | None:
    """Salvage an MSH from a message that failed to parse, for building an AR.

    Looks for the first ``MSH`` anywhere, decodes it as Latin-1 (never fails), and falls back
    to the default delimiters when MSH-2 is unusable. None when no MSH can be found.
    """
    at = data.find(b"MSH")
    if at < 0 or len(data) < at + 4:
        return None
    end = len(data)  # the MSH line only: decoding and splitting the whole message cost ~3 us
    for term in (b"\r", b"\n"):
        pos = data.find(term, at)
        if 0 <= pos < end:
            end = pos
    line = data[at:end].decode("latin-1")
    if len(line) < 4:
        return None
    fs = line[3]
    if fs.isalnum() or fs.isspace() or not fs.isprintable():
        return None
    try:
        enc = read_encoding(line)
    except HL7ParseError:
        enc = Encoding(field=fs) if fs not in DEFAULT_ENCODING.msh2 else DEFAULT_ENCODING
        if enc.field != fs:
            return None
    fields = line.split(fs)
    fields.insert(1, fs)
    return _from_segment(Segment("MSH", fields, enc))
