"""Encode the client's side of the IntelliVue Data Export protocol (client -> monitor).

Association request (with the poll profile in MDSEUserInfoStd), release request, the reply
to the MDS Create Event, extended poll requests (numerics, waves) and the keep-alive (an MDS
Get). All big-endian; layouts from the Data Export Interface Programming Guide.
"""

from __future__ import annotations

import struct

from . import nomenclature as n

__all__ = ["association_request", "keep_alive_request", "mds_create_result", "poll_request",
           "release_request"]

_MDS = struct.pack(">HHH", n.NOM_MOC_VMS_MDS, 0, 0)  # managed object: the MDS, context 0, handle 0


def _user_info(min_poll_ms: float) -> bytes:
    poll_ext = struct.pack(">IHH", 0x8C000000, 0, 0)  # period 1 s numerics + real-time waves
    optional = struct.pack(">HH", 1, 4 + len(poll_ext)) + struct.pack(">HH", n.NOM_ATTR_POLL_PROFILE_EXT,
                                                                      len(poll_ext)) + poll_ext
    profile = struct.pack(">IIIIII", 0x80000000, round(min_poll_ms * 8), 2500, 1000, 0xFFFFFFFF,
                          0x60000000) + optional
    profiles = struct.pack(">HH", 1, 4 + len(profile)) + struct.pack(
        ">HH", n.NOM_POLL_PROFILE_SUPPORT, len(profile)) + profile
    return struct.pack(">IIIII", 0x80000000, 0x40000000, 0, 0x80000000, 0x20000000) + \
        struct.pack(">HH", 0, 0) + profiles


def association_request(min_poll_ms: float = 125.0) -> bytes:
    """CN SPDU: session data, presentation header, MDSEUserInfoStd, presentation trailer."""
    user = _user_info(min_poll_ms)
    header = bytearray(n.ASSOC_PRESENTATION_HEADER)
    # user data: [1] octet-aligned, short length, then the trailer
    presentation = bytes(header[2:]) + bytes([0x81, len(user)]) + user + n.ASSOC_PRESENTATION_TRAILER
    header_len = len(presentation)
    if header_len > 0xFF or len(user) > 0x7F:
        raise ValueError("association request too long for short length forms")
    body = n.ASSOC_SESSION_DATA + bytes([header[0], header_len]) + presentation
    return bytes([n.CN_SPDU, len(body)]) + body


def release_request() -> bytes:
    """FN SPDU with the Guide's fixed presentation part."""
    return bytes.fromhex("0918c11661803080020100000000") + bytes(4)


def _sp(ro_type: int, body: bytes) -> bytes:
    return struct.pack(">HHHH", n.DATA_EXPORT_SESSION, 2, ro_type, len(body)) + body


def mds_create_result(invoke_id: int, managed_object: bytes, relative_time: int = 0) -> bytes:
    """The client's confirmation of the monitor's MDS Create Event (completes association)."""
    result = managed_object + struct.pack(">IHH", relative_time, n.NOM_NOTI_MDS_CREAT, 0)
    return _sp(n.RORS_APDU, struct.pack(">HHH", invoke_id, n.CMD_CONFIRMED_EVENT_REPORT,
                                        len(result)) + result)


def poll_request(invoke_id: int, poll_number: int, object_code: int, *, extended: bool = True) -> bytes:
    """Poll (extended by default) for all objects of ``object_code`` (numerics 6, waves 9)."""
    if extended:
        action_type = n.NOM_ACT_POLL_MDIB_DATA_EXT
        req = struct.pack(">HHHH", poll_number, n.NOM_PART_OBJ, object_code, 0) + struct.pack(">HH", 0, 0)
    else:
        action_type = n.NOM_ACT_POLL_MDIB_DATA
        req = struct.pack(">HHHH", poll_number, n.NOM_PART_OBJ, object_code, 0)
    arg = _MDS + struct.pack(">IHH", 0, action_type, len(req)) + req
    return _sp(n.ROIV_APDU, struct.pack(">HHH", invoke_id, n.CMD_CONFIRMED_ACTION, len(arg)) + arg)


def keep_alive_request(invoke_id: int) -> bytes:
    """MDS Get of all attributes: keeps the association alive and returns the monitor clock."""
    arg = _MDS + struct.pack(">IHH", 0, 0, 0)
    return _sp(n.ROIV_APDU, struct.pack(">HHH", invoke_id, n.CMD_GET, len(arg)) + arg)
