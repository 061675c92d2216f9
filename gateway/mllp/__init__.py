"""HL7v2 over MLLP: framing, the ingest pipeline (ACK after commit) and the TCP listener."""

from .framing import Frame, FrameReader, Oversized, frame

__all__ = ["Frame", "FrameReader", "Oversized", "frame"]
