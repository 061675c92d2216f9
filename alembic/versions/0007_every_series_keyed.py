"""search: every coded Observation of a Patient has series rows (codings without a system, long keys)

``fhir_server.search.composite`` now writes a patient+code series key for a coding without a
system too (system ``""``), and an end-time row for a key too long for the ``param`` column
(its first characters and a hash of the whole key). ``$lastn`` by category then finds all of a
patient's series in one range of ``ix_date_lo``. Upgrade writes both kinds of rows for what is
stored, as the indexer now writes them; downgrade removes them.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa

from alembic import op
from fhir_server.search.composite import END_PREFIX, composite_key, end_param

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

COMPOSITE_PARAM = "Observation.patient-code"  # the series key token rows, until 0008

_FITS = 96 - len(END_PREFIX)  # the longest key whose end-time row param is the key itself
_HASH_CHARS = 12  # composite._patient_hash: 9 bytes of base64


def _long_keys(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.text("SELECT DISTINCT code FROM idx_token WHERE param = :p AND length(code) > :n"),
                             {"p": COMPOSITE_PARAM, "n": _FITS}).scalars())


def upgrade() -> None:
    conn = op.get_bind()
    uncoded = conn.execute(sa.text(
        "SELECT c.rid, r.target_id, c.code FROM idx_token c JOIN idx_reference r ON r.rid = c.rid "
        "AND r.param = 'Observation.subject' AND r.target_type = 'Patient' AND r.target_id IS NOT NULL "
        "WHERE c.param = 'Observation.code' AND (c.system IS NULL OR c.system = '') "
        "AND c.code IS NOT NULL AND c.code <> ''")).all()
    rows = [{"rid": rid, "p": COMPOSITE_PARAM, "k": composite_key(pid, None, code)} for rid, pid, code in uncoded]
    if rows:
        conn.execute(sa.text("INSERT INTO idx_token (rid, param, system, code, text) "
                             "VALUES (:rid, :p, NULL, :k, NULL)"), rows)
    for key in {r["k"] for r in rows} | set(_long_keys(conn)):
        param = end_param(key)
        conn.execute(sa.text("DELETE FROM idx_date WHERE param = :e"), {"e": param})
        conn.execute(sa.text(
            "INSERT INTO idx_date (rid, param, lo, hi) SELECT t.rid, :e, max(d.hi), max(d.hi) FROM idx_token t "
            "JOIN idx_date d ON d.rid = t.rid AND d.param = 'Observation.date' "
            "WHERE t.param = :p AND t.code = :k GROUP BY t.rid"), {"e": param, "p": COMPOSITE_PARAM, "k": key})


def downgrade() -> None:
    conn = op.get_bind()
    for key in _long_keys(conn):
        conn.execute(sa.text("DELETE FROM idx_date WHERE param = :e"), {"e": end_param(key)})
    no_system = "_" * _HASH_CHARS + "||%"  # a key's hash, then the empty system
    conn.execute(sa.text("DELETE FROM idx_date WHERE param LIKE :e"), {"e": END_PREFIX + no_system})
    conn.execute(sa.text("DELETE FROM idx_token WHERE param = :p AND code LIKE :k"),
                 {"p": COMPOSITE_PARAM, "k": no_system})
