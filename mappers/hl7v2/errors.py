"""HL7v2 errors carrying an HL7 table 0357 code, so they can go straight into an ERR segment.

Hierarchy::

    Exception
     └── HL7Error            code (table 0357), text, location ("SEG^seq^field[^rep^comp^sub]")
          └── HL7ParseError  the bytes are not a well-formed HL7v2 message

Table 0357 (v2.5+): 0 accepted, 100 segment sequence error, 101 required field missing,
102 data type error, 103 table value not found, 200 unsupported message type,
201 unsupported event code, 202 unsupported processing id, 203 unsupported version id,
204 unknown key identifier, 205 duplicate key identifier, 206 application record locked,
207 application internal error.
"""

from __future__ import annotations

SEGMENT_SEQUENCE_ERROR = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
UNSUPPORTED_PROCESSING_ID = 202
UNSUPPORTED_VERSION_ID = 203
UNKNOWN_KEY_IDENTIFIER = 204
DUPLICATE_KEY_IDENTIFIER = 205
APPLICATION_RECORD_LOCKED = 206
APPLICATION_INTERNAL_ERROR = 207

ERROR_TEXT: dict[int, str] = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}


class HL7Error(Exception):
    """An error with an HL7 table 0357 code and an optional ERR-2 style location.

    ``location`` uses ``^`` between its parts (``"OBX^3^5"`` = third OBX segment, field 5);
    the ACK builder re-joins the parts with the inbound message's own component separator.
    """

    def __init__(self, code: int, text: str, location: str | None = None) -> None:
        super().__init__(code, text, location)
        self.code = code
        self.text = text
        self.location = location

    def __str__(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"HL7 error {self.code}{where}: {self.text}"

    @property
    def code_text(self) -> str:
        """The table 0357 description of ``code`` (used as ERR-3.2)."""
        return ERROR_TEXT.get(self.code, "Application error")


class HL7ParseError(HL7Error):
    """The input is not a well-formed HL7v2 message (or batch)."""
