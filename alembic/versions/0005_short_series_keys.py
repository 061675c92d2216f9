"""search: shorter Observation patient+code series keys (hashed patient id, short system)

``fhir_server.search.composite.composite_key`` changed from ``Patient/<id>|<system>|<code>``
to ``<patient hash>| l|<code>`` (see its docstring: fewer index pages per ingest commit).
Both hidden rows of a series are re-keyed: the ``Observation.patient-code`` token rows
(``code``) and the end-time date rows (``param`` ``Obs.pce|<key>``). A key that was too
long for an end-time row and now fits gets its rows (as 0004 wrote them); downgrade goes
back the same way.

Work is per distinct key (one patient's one coding, not per Observation): each key is
rebuilt from one of its Observations' ``subject`` (of a Patient) and ``code`` rows, which
holds for any system or code, ``|`` included.

Revision ID: 0005
Revises: 0004
"""
from collections.abc import Callable

import sqlalchemy as sa

from alembic import op
from fhir_server.search.composite import END_PREFIX, composite_key

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

COMPOSITE_PARAM = "Observation.patient-code"  # the series key token rows, until 0008

KeyFn = Callable[[str, str, str], str]


def end_param(key: str) -> str | None:
    """The end-time row param as 0004 to 0006 wrote it: none for a key too long (0007 hashes those)."""
    p = END_PREFIX + key
    return p if len(p) <= 96 else None


def _old_key(patient_id: str, system: str, code: str) -> str:
    """The key format of 0004 and before."""
    return f"Patient/{patient_id}|{system}|{code}"


def _rekey(conn: sa.Connection, old: KeyFn, new: KeyFn) -> None:
    keys = conn.execute(sa.text("SELECT DISTINCT code FROM idx_token WHERE param = :p"),
                        {"p": COMPOSITE_PARAM}).scalars().all()
    for key in keys:
        rid = conn.execute(sa.text("SELECT min(rid) FROM idx_token WHERE param = :p AND code = :k"),
                           {"p": COMPOSITE_PARAM, "k": key}).scalar()
        pairs = conn.execute(sa.text(
            "SELECT r.target_id, c.system, c.code FROM idx_reference r JOIN idx_token c "
            "ON c.rid = r.rid AND c.param = 'Observation.code' "
            "WHERE r.rid = :rid AND r.param = 'Observation.subject' AND r.target_type = 'Patient' "
            "AND r.target_id IS NOT NULL "
            "AND c.system IS NOT NULL AND c.code IS NOT NULL"), {"rid": rid}).all()
        found = next(((p, s, c) for p, s, c in pairs if old(p, s, c) == key), None)
        if found is None:
            continue  # not a key this format writes: leave it as it is
        target = new(*found)
        conn.execute(sa.text("UPDATE idx_token SET code = :n WHERE param = :p AND code = :k"),
                     {"n": target, "p": COMPOSITE_PARAM, "k": key})
        _move_end_rows(conn, end_param(key), end_param(target), target)


def _move_end_rows(conn: sa.Connection, was: str | None, now: str | None, key: str) -> None:
    if was is not None and now is not None:
        conn.execute(sa.text("UPDATE idx_date SET param = :n WHERE param = :o"), {"n": now, "o": was})
    elif was is not None:
        conn.execute(sa.text("DELETE FROM idx_date WHERE param = :o"), {"o": was})
    elif now is not None:
        conn.execute(sa.text(
            "INSERT INTO idx_date (rid, param, lo, hi) "
            "SELECT t.rid, :n, max(d.hi), max(d.hi) FROM idx_token t "
            "JOIN idx_date d ON d.rid = t.rid AND d.param = 'Observation.date' "
            "WHERE t.param = :p AND t.code = :k GROUP BY t.rid"),
            {"n": now, "p": COMPOSITE_PARAM, "k": key})


def upgrade() -> None:
    _rekey(op.get_bind(), _old_key, composite_key)


def downgrade() -> None:
    _rekey(op.get_bind(), composite_key, _old_key)
