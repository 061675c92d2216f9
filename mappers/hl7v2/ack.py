"""ACK messages built from string templates (hl7apy takes ~2 ms per ACK; this takes microseconds).

Original mode (MSH-15/16 empty): AA / AE / AR. Enhanced mode: accept ACK CA / CE / CR per
MSH-15, application ACK AA / AE / AR per MSH-16 (``accept_ack_code`` / ``app_ack_code``
say whether one is due at all). The ACK echoes the inbound delimiters, version and MSH-18,
swaps sender and receiver, and answers ``ACK^<event>^ACK`` with MSA-2 = inbound MSH-10.

Errors: v2.5+ gets ``ERR|<ERR-1 empty>|SEG^seq^field|code^text^HL70357|severity|...|detail``
(detail in ERR-8, user message, as HAPI does); v2.4 and earlier get ERR-1 as ELD
(``SEG^seq^field^code&text&HL70357``) and the detail also in MSA-3, the only text those
versions' receivers read. Severity (table 0516): E for AE/CE, F for the rejects AR/CR.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Literal

from .errors import APPLICATION_INTERNAL_ERROR, HL7Error
from .escape import Encoding, escape
from .header import MessageHeader
from .tokenizer import CHARSET_CODECS

Outcome = Literal["accept", "error", "reject"]
ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})
_ORIGINAL = {"accept": "AA", "error": "AE", "reject": "AR"}
_ACCEPT = {"accept": "CA", "error": "CE", "reject": "CR"}


def accept_ack_code(header: MessageHeader, outcome: Outcome) -> str | None:
    """The MSA-1 to send on this connection after commit (None: nothing is due).

    Original mode always answers AA/AE/AR. Enhanced mode answers CA/CE/CR as MSH-15 asks
    (AL always, NE never, ER only on error, SU only on success; empty counts as AL).
    """
    if not header.enhanced_mode:
        return _ORIGINAL[outcome]
    return _ACCEPT[outcome] if _wanted(header.accept_ack_type, outcome) else None


def app_ack_code(header: MessageHeader, outcome: Outcome) -> str | None:
    """Enhanced mode only: the application ACK (AA/AE/AR) MSH-16 asks for, else None."""
    if not header.enhanced_mode or not header.app_ack_type:
        return None
    return _ORIGINAL[outcome] if _wanted(header.app_ack_type, outcome) else None


def _wanted(condition: str, outcome: Outcome) -> bool:
    condition = condition.upper() or "AL"
    if condition == "NE":
        return False
    if condition == "ER":
        return outcome != "accept"
    if condition == "SU":
        return outcome == "accept"
    return True


def version_tuple(version: str) -> tuple[int, ...]:
    """``"2.3.1"`` -> ``(2, 3, 1)``; unreadable versions count as 2.5."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (2, 5)


def build_ack(
    header: MessageHeader,
    code: str,
    *,
    error: HL7Error | None = None,
    now: datetime,
    control_id: str,
) -> bytes:
    """The complete ACK message (segments end in ``\\r``, no MLLP framing)."""
    if code not in ACK_CODES:
        raise ValueError(f"not an acknowledgement code: {code!r}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    enc = header.encoding
    version = header.version or "2.5"
    if code[1] == "A":
        error = None
    elif error is None:
        error = HL7Error(APPLICATION_INTERNAL_ERROR, "Application internal error")
    before_time, before_cid, after_cid, old, codec = _msh_template(
        enc, version, header.receiving_app, header.receiving_facility, header.sending_app,
        header.sending_facility, header.trigger_event, header.processing_id, header.charset)
    text = (f"{before_time}{_hl7_time(now)}{before_cid}{escape(control_id, enc)}{after_cid}\r"
            f"{_msa(header, code, error, enc, old)}\r")
    if error is not None:
        text += _err(error, code, enc, old) + "\r"
    return text.encode(codec, errors="replace")


@lru_cache(maxsize=1024)
def _msh_template(enc: Encoding, version: str, receiving_app: str, receiving_facility: str,
                  sending_app: str, sending_facility: str, trigger_event: str, processing_id: str,
                  charset: str) -> tuple[str, str, str, bool, str]:
    """The ACK's MSH around its time and control id, its version rule and its codec: the same
    for every message of a sender, so built once per sender (not per ACK)."""
    c, fs = enc.component, enc.field
    msg_type = f"ACK{c}{trigger_event}" if trigger_event else "ACK"
    if trigger_event and version_tuple(version) >= (2, 3, 1):
        msg_type += f"{c}ACK"
    before_time = fs.join(["MSH", enc.msh2, receiving_app, receiving_facility, sending_app,
                           sending_facility, ""])
    after_cid = ["", processing_id or "P", escape(version, enc)]
    if charset:
        after_cid += ["", "", "", "", "", charset]
    return (before_time, fs.join(["", "", msg_type, ""]), fs.join(after_cid),
            version_tuple(version) < (2, 5), CHARSET_CODECS.get(charset.upper(), "utf-8"))


_last_time: tuple[tuple[object, ...], str] = ((), "")


def _hl7_time(now: datetime) -> str:
    """``now`` as an HL7 DTM with offset; the last second's text is kept (strftime ~3 us,
    and an ACK stream asks for the same second hundreds of times). The key holds every
    input of the text: the wall clock to the second, the fold and the zone."""
    global _last_time
    key = (now.year, now.month, now.day, now.hour, now.minute, now.second, now.fold, now.tzinfo)
    last_key, text = _last_time
    if last_key != key:
        text = now.strftime("%Y%m%d%H%M%S%z")
        _last_time = (key, text)
    return text


def _msa(header: MessageHeader, code: str, error: HL7Error | None, enc: Encoding,
         old: bool) -> str:
    fields = ["MSA", code, header.control_id]
    if error is not None and old:
        fields.append(escape(error.text, enc))
    return enc.field.join(fields)


def _err(error: HL7Error, code: str, enc: Encoding, old: bool) -> str:
    c, s = enc.component, enc.subcomponent
    location = [escape(part, enc) for part in (error.location or "").split("^") if part]
    text = escape(error.code_text, enc)
    if old:
        eld = (location + ["", "", ""])[:3] if location else ["", "", ""]
        eld.append(f"{error.code}{s}{text}{s}HL70357")
        return enc.field.join(["ERR", c.join(eld)])
    severity = "F" if code[1] == "R" else "E"
    fields = ["ERR", "", c.join(location), f"{error.code}{c}{text}{c}HL70357", severity,
              "", "", "", escape(error.text, enc)]
    return enc.field.join(fields)
