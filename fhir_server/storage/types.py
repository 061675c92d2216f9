"""Value types of the storage API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Method = Literal["POST", "PUT", "PATCH", "DELETE"]


def now_us() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)


def us_to_instant(us: int) -> str:
    """FHIR instant with microseconds, UTC."""
    dt = datetime.fromtimestamp(us / 1_000_000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One version of a resource as stored: the body holds ``id`` and ``meta``."""

    type: str
    id: str
    version: int
    last_updated: int
    deleted: bool
    body: bytes

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


@dataclass(frozen=True, slots=True)
class Written:
    """The outcome of one write, known once its transaction has committed."""

    type: str
    id: str
    version: int
    last_updated: int
    seq: int
    created: bool
    deleted: bool
    body: bytes
    vid: int = 0  # the version row: with ``seq``, what the change log holds for this write

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


@dataclass(frozen=True, slots=True)
class Change:
    """One change-log entry."""

    seq: int
    type: str
    id: str
    version: int
    op: str
    ts: int
    vid: int


@dataclass(frozen=True, slots=True)
class Prepared:
    """The version-independent work of writing one resource, done before the writer's
    transaction (see ``Store.prepare``): the JSON of its elements after ``meta`` and its
    index rows as ``(kind, row without rid)`` tuples in the index tables' column order."""

    tail: bytes  # b'"status":...}' (the elements after meta, closing brace), or b'}'
    index: tuple[tuple[str, tuple[Any, ...]], ...]
    meta: bytes = b""  # the resource's own meta elements, without braces: b'"tag":[...]'


@dataclass(slots=True)
class PendingWrite:
    """A write queued in a transaction; ``result`` is set when the transaction flushes."""

    type: str
    id: str
    resource: dict[str, Any] | None  # None for a delete
    method: Method
    if_match: int | None = None
    must_not_exist: bool = False
    result: Written | None = None
    if_absent: bool = False  # write only if no live version exists (else ``skipped``)
    skipped: bool = False
    prepared: Prepared | None = None
    # the id was just minted (``new_id``): no stored resource has it, so the flush does not
    # look it up (a clash, which uuid7 makes as unlikely as a uuid4 one, fails on uq(type, id))
    minted: bool = False

    def written(self) -> Written:
        if self.skipped:
            raise RuntimeError("write skipped: the resource already existed (if_absent)")
        if self.result is None:
            raise RuntimeError("write not flushed yet")
        return self.result


class Buffered:
    """A fully fetched result: iterable rows plus ``first()`` / ``scalar()``."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def __iter__(self) -> Any:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def all(self) -> list[Any]:
        return self.rows
