"""HL7v2: fast tokenizer, MSH header, template ACKs and ORU/ADT mappings to FHIR R4B dicts.

Pure functions only: bytes in, parsed messages, resource dicts and ACK bytes out.
"""

from .ack import accept_ack_code, app_ack_code, build_ack
from .adt import ADT_EVENTS, map_adt
from .context import MappingContext, MappingResult
from .dispatch import MAPPERS, REJECT_CODES, check_acceptable, map_message
from .errors import HL7Error, HL7ParseError
from .escape import Encoding, escape, unescape
from .header import MessageHeader, read_header, read_header_lenient
from .oru import map_oru
from .tokenizer import Message, Segment, parse, parse_batch

__all__ = [
    "ADT_EVENTS",
    "MAPPERS",
    "REJECT_CODES",
    "Encoding",
    "HL7Error",
    "HL7ParseError",
    "MappingContext",
    "MappingResult",
    "Message",
    "MessageHeader",
    "Segment",
    "accept_ack_code",
    "app_ack_code",
    "build_ack",
    "check_acceptable",
    "escape",
    "map_adt",
    "map_message",
    "map_oru",
    "parse",
    "parse_batch",
    "read_header",
    "read_header_lenient",
    "unescape",
]
