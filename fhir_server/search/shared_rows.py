"""Reference parameters answered from a broader parameter's rows: ``patient`` from ``subject``.

``Observation.patient`` is ``Observation.subject`` restricted to Patient targets (the same
path). Stored separately it was a second, identical reference row for every Observation: one
more index entry on a per-patient key, ~32 WAL pages of an MLLP group commit
(docs/mllp-ingest-performance.md). The registry marks such a parameter with ``rows_of`` (the
broader one); nothing is stored under its own key, and its rows are the broader parameter's
rows that the extractor would have kept for it: a target of one of its types, or an absolute
URL of no known type (``extract._reference_handler``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.sql.expression import FromClause

from .registry import SearchParam

__all__ = ["param_rows", "row_of"]


def param_rows(t: FromClause, p: SearchParam, *, by_rid: bool = False) -> ColumnElement[bool]:
    """The condition selecting the index rows of ``p`` in ``t`` (an ``idx_*`` table).

    ``by_rid``: the rows are reached by rid, and ``param`` is only checked on them, written so
    that no index on ``param`` can be chosen for it (``param || ''``)."""
    param = t.c.param.concat("") if by_rid else t.c.param
    if not p.rows_of:
        return param == p.key
    return and_(param == p.rows_key, or_(
        t.c.target_type.in_(p.target_types), and_(t.c.target_type.is_(None), t.c.url.is_not(None))))


def row_of(p: SearchParam, row: Mapping[str, Any]) -> bool:
    """``param_rows`` for an index row in memory (``extract_index`` output)."""
    if row["param"] != p.rows_key:
        return False
    if not p.rows_of:
        return True
    ttype = row.get("target_type")
    return ttype in p.target_types if ttype is not None else row.get("url") is not None
