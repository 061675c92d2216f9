"""search: one hidden row a series reading (its end-time row), not two

Until now every coded Observation of a Patient had two hidden rows a coding: an
``Observation.patient-code`` token row (the series key as its code) for patient+code searches,
and an end-time ``idx_date`` row (``Obs.pce|<key>``) for ``$lastn`` and date bounds. The
end-time rows' param range answers the patient+code search as well, so the token rows go:
they were ~32 % of the index pages an ingest commit wrote. An Observation without a time had
no end-time row; it now has one at ``UNDATED`` (below every real time), so a patient+code
search still finds it. Upgrade writes those rows and removes the token rows; downgrade puts
the token rows back from the ``code`` and ``subject`` rows, as the indexer wrote them (one a
coding), and removes the ``UNDATED`` rows.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa

from alembic import op
from fhir_server.search.composite import END_PREFIX, composite_key, end_param

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

COMPOSITE_PARAM = "Observation.patient-code"  # the series key token rows, until this revision
UNDATED = -(2**63)  # composite.UNDATED as this revision writes it


def upgrade() -> None:
    conn = op.get_bind()
    undated = conn.execute(sa.text(
        "SELECT t.rid, t.code FROM idx_token t WHERE t.param = :p AND NOT EXISTS "
        "(SELECT 1 FROM idx_date d WHERE d.rid = t.rid AND d.param = 'Observation.date')"),
        {"p": COMPOSITE_PARAM}).all()
    rows = [{"rid": rid, "e": end_param(key), "u": UNDATED} for rid, key in dict.fromkeys(map(tuple, undated))]
    if rows:
        conn.execute(sa.text("INSERT INTO idx_date (rid, param, lo, hi) VALUES (:rid, :e, :u, :u)"), rows)
    conn.execute(sa.text("DELETE FROM idx_token WHERE param = :p"), {"p": COMPOSITE_PARAM})


def downgrade() -> None:
    conn = op.get_bind()
    codings = conn.execute(sa.text(
        "SELECT c.rid, r.target_id, c.system, c.code FROM idx_token c JOIN idx_reference r ON r.rid = c.rid "
        "AND r.param = 'Observation.subject' AND r.target_type = 'Patient' AND r.target_id IS NOT NULL "
        "WHERE c.param = 'Observation.code' AND c.code IS NOT NULL AND c.code <> '' ORDER BY c.pk")).all()
    rows = [{"rid": rid, "p": COMPOSITE_PARAM, "k": composite_key(pid, system, code)}
            for rid, pid, system, code in codings]
    if rows:
        conn.execute(sa.text("INSERT INTO idx_token (rid, param, system, code, text) "
                             "VALUES (:rid, :p, NULL, :k, NULL)"), rows)
    conn.execute(sa.text("DELETE FROM idx_date WHERE param LIKE :e AND lo = :u"),
                 {"e": END_PREFIX + "%", "u": UNDATED})
