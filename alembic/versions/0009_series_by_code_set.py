"""search: one series row an Observation (series keyed by the whole code), series_member

Until now an Observation of a Patient had one end-time ``idx_date`` row a coding
(``Obs.pce|<coding key>``). An Observation of two or more codings now has one row, in the
series of its whole code (``composite.set_key``), and ``series_member`` names the series that
hold each coding's readings (search/composite.py). Upgrade creates the table, replaces the
per-coding rows of every multi-coding Observation by its one row (at the same time) and
writes the membership of every series; downgrade puts the per-coding rows back from the membership and drops
the table. An Observation of one coding keeps its row as it was.

Revision ID: 0009
Revises: 0008
"""
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from alembic import op
from fhir_server.search.composite import END_PREFIX, series_rows

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_BATCH = 5000
_RIDS = 50_000


def upgrade() -> None:
    op.create_table(
        "series_member",
        sa.Column("pkey", sa.String(96), primary_key=True),
        sa.Column("set_param", sa.String(96), primary_key=True),
        sqlite_with_rowid=False,
    )
    conn = op.get_bind()
    top = conn.execute(sa.text("SELECT max(rid) FROM resource")).scalar() or 0
    members: set[tuple[str, str]] = set()
    for lo in range(0, top + 1, _RIDS):  # a range of rids at a time: memory stays bounded
        members |= _rebuild(conn, lo, lo + _RIDS)
    if members:
        conn.execute(sa.text("INSERT INTO series_member (pkey, set_param) VALUES (:k, :s)"),
                     [{"k": k, "s": s} for k, s in sorted(members)])


def _rebuild(conn: sa.Connection, lo: int, hi: int) -> set[tuple[str, str]]:
    """The series rows of the Observations with ``lo <= rid < hi``; returns their membership."""
    coded = conn.execute(sa.text(
        "SELECT c.rid, c.system, c.code, r.target_id FROM idx_token c JOIN idx_reference r ON r.rid = c.rid "
        "AND r.param = 'Observation.subject' AND r.target_type = 'Patient' AND r.target_id IS NOT NULL "
        "WHERE c.param = 'Observation.code' AND c.code IS NOT NULL AND c.code <> '' "
        "AND c.rid >= :lo AND c.rid < :hi ORDER BY c.rid"), {"lo": lo, "hi": hi}).all()
    by_rid: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for rid, system, code, pid in coded:
        tokens, refs = by_rid.setdefault(rid, ([], []))
        tokens.append({"param": "Observation.code", "system": system, "code": code})
        if not refs:
            refs.append({"param": "Observation.subject", "target_type": "Patient", "target_id": pid})
    members: set[tuple[str, str]] = set()
    moves: list[tuple[int, str]] = []
    for rid, (tokens, refs) in by_rid.items():
        params, rows = series_rows(tokens, refs)
        members.update(rows)
        if any(k != s for k, s in rows):  # two or more codings: one row in the set's series
            moves += [(rid, p) for p in params]
    for i in range(0, len(moves), _BATCH):
        _move(conn, moves[i:i + _BATCH])
    return members


def _move(conn: sa.Connection, moves: Sequence[tuple[int, str]]) -> None:
    """Each rid's end-time rows (one time, the latest end) become one row at ``param``."""
    rids = list(dict.fromkeys(rid for rid, _ in moves))
    ends_sql = sa.text("SELECT rid, max(lo) FROM idx_date WHERE rid IN :rids AND param LIKE :e GROUP BY rid")
    ends: dict[int, int] = dict(conn.execute(ends_sql.bindparams(sa.bindparam("rids", expanding=True)),
                             {"rids": rids, "e": END_PREFIX + "%"}).all())
    conn.execute(sa.text("DELETE FROM idx_date WHERE rid = :rid AND param LIKE :e"),
                 [{"rid": rid, "e": END_PREFIX + "%"} for rid in rids])
    conn.execute(sa.text("INSERT INTO idx_date (rid, param, lo, hi) VALUES (:rid, :p, :t, :t)"),
                 [{"rid": rid, "p": p, "t": ends[rid]} for rid, p in moves if rid in ends])


def downgrade() -> None:
    conn = op.get_bind()
    sets = conn.execute(sa.text(
        "SELECT d.rid, d.lo, m.pkey FROM series_member m JOIN idx_date d ON d.param = m.set_param "
        "WHERE m.pkey <> m.set_param")).all()
    conn.execute(sa.text("DELETE FROM idx_date WHERE param IN "
                         "(SELECT set_param FROM series_member WHERE pkey <> set_param)"))
    if sets:
        conn.execute(sa.text("INSERT INTO idx_date (rid, param, lo, hi) VALUES (:rid, :p, :t, :t)"),
                     [{"rid": rid, "p": pkey, "t": lo} for rid, lo, pkey in sets])
    op.drop_table("series_member")
