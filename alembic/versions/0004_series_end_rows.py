"""search: series end-time rows for Observation patient+code (idx_date, param 'Obs.pce|<key>')

Backfills, for every stored Observation, the hidden ``idx_date`` row that
``fhir_server.search.composite.composite_date_rows`` now writes: one per patient+code key,
at the latest end of the Observation's ``date`` rows. ``$lastn`` by code and
``patient&code&date=ge`` searches read these rows (see ``composite.py``).

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

PREFIX = 'Obs.pce|'


def upgrade() -> None:
    op.execute(
        "INSERT INTO idx_date (rid, param, lo, hi) "
        f"SELECT t.rid, '{PREFIX}' || t.code, max(d.hi), max(d.hi) "
        "FROM idx_token t JOIN idx_date d ON d.rid = t.rid AND d.param = 'Observation.date' "
        "WHERE t.param = 'Observation.patient-code' AND length(t.code) <= 96 - length('" + PREFIX + "') "
        "GROUP BY t.rid, t.code"
    )


def downgrade() -> None:
    op.execute(f"DELETE FROM idx_date WHERE param LIKE '{PREFIX}%'")
