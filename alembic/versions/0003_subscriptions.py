"""subscriptions: per-subscription event numbers

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'subscription_event',
        sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('sub_id', sa.String(length=64), nullable=False),
        sa.Column('number', sa.BigInteger(), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('type', sa.String(length=64), nullable=False),
        sa.Column('res_id', sa.String(length=64), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('vid', sa.BigInteger(), nullable=False),
        sa.Column('op', sa.String(length=8), nullable=False),
        sa.Column('ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('pk'),
    )
    with op.batch_alter_table('subscription_event', schema=None) as batch_op:
        batch_op.create_index('ux_subscription_event_number', ['sub_id', 'number'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('subscription_event', schema=None) as batch_op:
        batch_op.drop_index('ux_subscription_event_number')
    op.drop_table('subscription_event')
