"""search: ix_date_hi (param, hi DESC, rid) for a page of ``_sort=-<date>`` read in index order

A descending date sort orders resources by their latest end (``max(hi)``); no index held
``hi`` first, so ``Observation?_sort=-date&_count=10`` sorted every Observation (180 ms at
100,000 on SQLite). ``search/sql_stream.py`` (``date_sorted``) walks this index newest first
and stops after the page. The ascending sort walks ``ix_date_lo``, which already exists.

Partial: the hidden series end-time rows (``Obs.pce|...``, search/composite.py) are left out.
They are never sorted on, and each ingest commit writes them into as many leaves as it touches
series; the ordinary date rows of new resources land in one leaf per parameter. The query
repeats the predicate literally (``NOT LIKE 'Obs.pce|%'``) so both planners prove the index
applies. Descending ``hi`` then ascending ``rid`` is the page order itself (ties by rid), so
neither database sorts.

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # written out: a migration keeps its own copy of composite.END_PREFIX
    op.execute("CREATE INDEX ix_date_hi ON idx_date (param, hi DESC, rid) WHERE param NOT LIKE 'Obs.pce|%'")


def downgrade() -> None:
    op.execute("DROP INDEX ix_date_hi")
