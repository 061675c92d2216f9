"""Tables of the FHIR store, declared with SQLModel; the hot path uses their Core ``__table__``.

Portable choices (ARCHITECTURE.md "Storage"): resource JSON kept as received, as bytes;
times as epoch microseconds; search columns pre-normalised; 64-bit keys that stay rowid
aliases on SQLite (``Key``).

- ``resource``: one row per logical resource, pointing at its current version.
- ``resource_version``: every version ever written (history, vread).
- ``change_log``: append-only, one row per write; ``seq`` is the spine every consumer reads.
- ``consumer_cursor``: each consumer's durable position in the change log.
- ``idx_*``: search-index rows of the *current* version, keyed by ``rid``; ``param`` is
  ``"<ResourceType>.<name>"``.
- ``series_member``: which series hold a coding's readings, per patient (search/composite.py);
  facts about codes, not about one resource: never deleted with a resource's rows.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, Table, UniqueConstraint, text
from sqlmodel import Field, SQLModel

# BIGINT on PostgreSQL, INTEGER on SQLite so that the key is a rowid alias there.
Key = BigInteger().with_variant(Integer(), "sqlite")


def _pk() -> int | None:
    return cast("int | None", Field(default=None, sa_column=Column(Key, primary_key=True, autoincrement=True)))


def _bigint(nullable: bool = False, index: bool = False) -> int:
    return cast(int, Field(sa_column=Column(BigInteger, nullable=nullable, index=index)))


def table_of(model: type[SQLModel]) -> Table:
    """A table model's Core table (SQLModel sets ``__table__`` at class creation; typed here once)."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


class ResourceRow(SQLModel, table=True):
    __tablename__ = "resource"
    __table_args__ = (
        UniqueConstraint("type", "id", name="uq_resource_type_id"),
        Index("ix_resource_type_updated", "type", "last_updated"),  # _lastUpdated (0002)
    )
    rid: int | None = _pk()
    type: str = Field(max_length=64)
    id: str = Field(max_length=64)
    version: int
    last_updated: int = _bigint()
    deleted: bool = False
    vid: int = _bigint()


class ResourceVersionRow(SQLModel, table=True):
    __tablename__ = "resource_version"
    __table_args__ = (UniqueConstraint("rid", "version", name="uq_version_rid_version"),)
    vid: int | None = _pk()
    rid: int = _bigint()
    version: int
    last_updated: int = _bigint()
    deleted: bool = False
    method: str = Field(max_length=8)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ChangeLogRow(SQLModel, table=True):
    __tablename__ = "change_log"
    seq: int | None = _pk()
    rid: int = _bigint()
    vid: int = _bigint()
    type: str = Field(max_length=64)
    id: str = Field(max_length=64)
    version: int
    op: str = Field(max_length=8)
    ts: int = _bigint()


class ConsumerCursorRow(SQLModel, table=True):
    __tablename__ = "consumer_cursor"
    name: str = Field(primary_key=True, max_length=128)
    seq: int = _bigint()
    updated: int = _bigint()


class TokenIndexRow(SQLModel, table=True):
    __tablename__ = "idx_token"
    __table_args__ = (
        Index("ix_token_code", "param", "code", "rid"),
        Index("ix_token_rid", "rid"),
    )
    pk: int | None = _pk()
    rid: int = _bigint()
    param: str = Field(max_length=96)
    system: str | None = None
    code: str | None = None
    text: str | None = None  # normalised display/text, for :text


class StringIndexRow(SQLModel, table=True):
    __tablename__ = "idx_string"
    __table_args__ = (
        Index("ix_string_value", "param", "value", "rid"),
        Index("ix_string_rid", "rid"),
    )
    pk: int | None = _pk()
    rid: int = _bigint()
    param: str = Field(max_length=96)
    value: str  # casefolded, accents stripped: default and :contains search
    exact: str  # as written: :exact search


_NOT_SERIES_END = text("param NOT LIKE 'Obs.pce|%'")  # migration 0010's predicate, written out as there


class DateIndexRow(SQLModel, table=True):
    __tablename__ = "idx_date"
    __table_args__ = (
        Index("ix_date_lo", "param", "lo", "rid"),
        Index("ix_date_rid_cover", "rid", "param", "lo", "hi"),  # covers probes by rid (0002)
        # a page of _sort=-<date> in index order, without the series end-time rows (0010)
        Index("ix_date_hi", "param", text("hi DESC"), "rid", sqlite_where=_NOT_SERIES_END,
              postgresql_where=_NOT_SERIES_END),
    )
    pk: int | None = _pk()
    rid: int = _bigint()
    param: str = Field(max_length=96)
    lo: int = _bigint()  # inclusive start, epoch µs
    hi: int = _bigint()  # inclusive end, epoch µs


class ReferenceIndexRow(SQLModel, table=True):
    __tablename__ = "idx_reference"
    __table_args__ = (
        Index("ix_reference_target", "param", "target_id", "rid"),
        Index("ix_reference_rid", "rid"),
    )
    pk: int | None = _pk()
    rid: int = _bigint()
    param: str = Field(max_length=96)
    target_type: str | None = None
    target_id: str | None = None
    url: str | None = None  # absolute or canonical references


class QuantityIndexRow(SQLModel, table=True):
    __tablename__ = "idx_quantity"
    __table_args__ = (
        Index("ix_quantity_value", "param", "canon_code", "canon_value", "rid"),
        Index("ix_quantity_rid", "rid"),
    )
    pk: int | None = _pk()
    rid: int = _bigint()
    param: str = Field(max_length=96)
    system: str | None = None
    code: str | None = None
    value: float
    canon_code: str | None = None  # UCUM-normalised unit
    canon_value: float | None = None


class NumberIndexRow(SQLModel, table=True):
    __tablename__ = "idx_number"
    __table_args__ = (
        Index("ix_number_value", "param", "value", "rid"),
        Index("ix_number_rid", "rid"),
    )
    pk: int | None = _pk()
    rid: int = _bigint()
    param: str = Field(max_length=96)
    value: float


MEMBER_KIND = "member"  # an indexer's kind for series_member rows: (pkey, set_param), no rid


class SeriesMemberRow(SQLModel, table=True):
    __tablename__ = "series_member"
    __table_args__ = {"sqlite_with_rowid": False}  # looked up by its key only: no rowid b-tree
    pkey: str = Field(primary_key=True, max_length=96)  # a coding's series param (Obs.pce|...)
    set_param: str = Field(primary_key=True, max_length=96)  # a series of two or more codings holding it


INDEX_TABLES = {
    "token": table_of(TokenIndexRow),
    "string": table_of(StringIndexRow),
    "date": table_of(DateIndexRow),
    "reference": table_of(ReferenceIndexRow),
    "quantity": table_of(QuantityIndexRow),
    "number": table_of(NumberIndexRow),
}

resource = table_of(ResourceRow)
resource_version = table_of(ResourceVersionRow)
change_log = table_of(ChangeLogRow)
consumer_cursor = table_of(ConsumerCursorRow)
series_member = table_of(SeriesMemberRow)
metadata = SQLModel.metadata
