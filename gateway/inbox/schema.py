"""The MLLP inbox: every received message, raw, with its outcome (accepted or dead letter)."""

from __future__ import annotations

from sqlalchemy import Column, Index, LargeBinary
from sqlmodel import Field, SQLModel

from fhir_server.storage.schema import _bigint, _pk, table_of


class InboxRow(SQLModel, table=True):
    __tablename__ = "inbox"
    __table_args__ = (
        Index("ix_inbox_key", "sending_app", "sending_facility", "control_id"),
        Index("ix_inbox_status", "status", "received_at"),
        Index("ix_inbox_patient", "patient_key"),
    )
    pk: int | None = _pk()
    received_at: int = _bigint()
    peer: str = Field(default="", max_length=128)
    sending_app: str = Field(default="", max_length=180)
    sending_facility: str = Field(default="", max_length=180)
    control_id: str = Field(default="", max_length=64)
    message_type: str = Field(default="", max_length=32)
    payload_hash: str = Field(max_length=64)
    status: str = Field(max_length=16)  # accepted | dead | replayed
    reason: str | None = None
    patient_key: str | None = Field(default=None, max_length=256)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    ack: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


inbox = table_of(InboxRow)
