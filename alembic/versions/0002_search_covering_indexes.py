"""search covering indexes: idx_date by resource, resource by type and last update

- ``ix_date_rid_cover`` (rid, param, lo, hi) answers a date probe for a known resource from
  the index alone; it starts with ``rid``, so it replaces ``ix_date_rid`` (rid), which would
  only cost writes.
- ``ix_resource_type_updated`` (type, last_updated): ``_lastUpdated`` filters and sorts and
  type-wide history without a scan.

Both grow at their end during ingest (rising rid, rising time), so writes stay cheap.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.create_index('ix_date_rid_cover', ['rid', 'param', 'lo', 'hi'], unique=False)
        batch_op.drop_index('ix_date_rid')
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.create_index('ix_resource_type_updated', ['type', 'last_updated'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.drop_index('ix_resource_type_updated')
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.create_index('ix_date_rid', ['rid'], unique=False)
        batch_op.drop_index('ix_date_rid_cover')
