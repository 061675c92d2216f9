"""Acceptance checks (processing id, version, type/event) and the message-type dispatch table.

Errors 200-203 are refusals: the listener answers AR/CR (``REJECT_CODES``); any other
HL7Error from mapping is an AE/CE with the message kept as a dead letter.
"""

from __future__ import annotations

from collections.abc import Callable

from .adt import ADT_EVENTS, map_adt
from .context import MappingContext, MappingResult
from .errors import (
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_PROCESSING_ID,
    UNSUPPORTED_VERSION_ID,
    HL7Error,
)
from .header import MessageHeader, read_header
from .oru import map_oru
from .tokenizer import Message

Mapper = Callable[[Message, MappingContext], MappingResult]
MAPPERS: dict[tuple[str, str], Mapper] = {
    ("ORU", "R01"): map_oru,  # IHE PCD-01 and Philips PIIC exports
    ("ORU", "R40"): map_oru,  # IHE PCD-04 alarms
    ("ORU", "R42"): map_oru,  # IHE PCD-10 infusion events
    **{("ADT", event): map_adt for event in sorted(ADT_EVENTS)},
}
REJECT_CODES = frozenset({UNSUPPORTED_MESSAGE_TYPE, UNSUPPORTED_EVENT_CODE,
                          UNSUPPORTED_PROCESSING_ID, UNSUPPORTED_VERSION_ID})


def check_acceptable(header: MessageHeader, ctx: MappingContext) -> None:
    """Raise HL7Error 202 / 203 / 200 / 201 when the message is to be refused."""
    if header.processing_id not in ctx.accepted_processing_ids:
        raise HL7Error(UNSUPPORTED_PROCESSING_ID,
                       f"processing id {header.processing_id[:5]!r} not accepted", "MSH^1^11")
    if header.version not in ctx.supported_versions:
        raise HL7Error(UNSUPPORTED_VERSION_ID, f"version {header.version[:10]!r} not supported",
                       "MSH^1^12")
    if not any(kind == header.message_type for kind, _ in MAPPERS):
        raise HL7Error(UNSUPPORTED_MESSAGE_TYPE,
                       f"message type {header.message_type[:10]!r} not supported", "MSH^1^9")
    if (header.message_type, header.trigger_event) not in MAPPERS:
        raise HL7Error(UNSUPPORTED_EVENT_CODE, f"event {header.message_type[:10]}^"
                       f"{header.trigger_event[:10]} not supported", "MSH^1^9")


def map_message(msg: Message, ctx: MappingContext) -> MappingResult:
    """Check acceptability, then map by (MSH-9.1, MSH-9.2)."""
    header = read_header(msg)
    check_acceptable(header, ctx)
    return MAPPERS[(header.message_type, header.trigger_event)](msg, ctx)
