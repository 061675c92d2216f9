"""HL7v2 over MLLP: framing, the ingest pipeline (ACK after commit) and the TCP listener."""

from .framing import Frame, FrameReader, Oversized, frame
from .ingest import Ingestor, IngestResult
from .senders import parse_senders, sender_allowed
from .server import ListenerConfig, MllpServer, parse_allowlist, peer_allowed, server_ssl_context
from .service import mllp_service
from .wiring import listener_config, mapping_context, run_listener

__all__ = [
    "Frame",
    "FrameReader",
    "IngestResult",
    "Ingestor",
    "ListenerConfig",
    "MllpServer",
    "Oversized",
    "frame",
    "listener_config",
    "mapping_context",
    "mllp_service",
    "parse_allowlist",
    "parse_senders",
    "peer_allowed",
    "run_listener",
    "sender_allowed",
    "server_ssl_context",
]
