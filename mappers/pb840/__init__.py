"""Puritan Bennett 840/980 ventilator records (``MISCF`` / ``MISCA``): decoder and FHIR mapping."""

from mappers.pb840.decoder import (
    AlarmStatus,
    DecodedVentRecord,
    VentDecodeError,
    VentMode,
    VentValue,
    decode_misca,
    decode_miscf,
    decode_response,
    split_frame,
    vent_clock,
)
from mappers.pb840.fhir import (
    connection_state_observation,
    vendor_code_system,
    vent_device_resource,
    vent_record_to_fhir,
)
from mappers.pb840.waveform import WaveformStream, WaveSegment

__all__ = [
    "AlarmStatus",
    "DecodedVentRecord",
    "VentDecodeError",
    "VentMode",
    "VentValue",
    "WaveSegment",
    "WaveformStream",
    "connection_state_observation",
    "decode_misca",
    "decode_miscf",
    "decode_response",
    "split_frame",
    "vendor_code_system",
    "vent_clock",
    "vent_device_resource",
    "vent_record_to_fhir",
]
