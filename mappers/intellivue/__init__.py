"""Philips IntelliVue LAN Data Export protocol (UDP): message decoder, client-side request
encoders and the FHIR mapping of numerics and waves. Pure functions: no sockets here."""

from mappers.intellivue.binary import IntellivueDecodeError, decode_abs_time, decode_float
from mappers.intellivue.fhir import IntellivueMapping, device_id_for, intellivue_device, poll_to_fhir
from mappers.intellivue.messages import (
    AssociationResult,
    ConnectIndication,
    KeepAliveResult,
    MdsCreateEvent,
    NumericValue,
    PollResult,
    RemoteError,
    SessionEnd,
    UserInfo,
    WaveValue,
    decode_message,
)
from mappers.intellivue.requests import (
    association_request,
    keep_alive_request,
    mds_create_result,
    poll_request,
    release_request,
)

__all__ = [
    "AssociationResult",
    "ConnectIndication",
    "IntellivueDecodeError",
    "IntellivueMapping",
    "KeepAliveResult",
    "MdsCreateEvent",
    "NumericValue",
    "PollResult",
    "RemoteError",
    "SessionEnd",
    "UserInfo",
    "WaveValue",
    "association_request",
    "decode_abs_time",
    "decode_float",
    "decode_message",
    "device_id_for",
    "intellivue_device",
    "keep_alive_request",
    "mds_create_result",
    "poll_request",
    "poll_to_fhir",
    "release_request",
]
