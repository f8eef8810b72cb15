"""requests: leases on work in flight and a count of carry-out attempts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 12:00:00

Hand-written; `tests/approvals/test_migrations.py` checks it matches `approvals/tables.py`.
Requests already `approved` or `executing` get no lease, which the recovery sweep reads as
run out: they are resumed at once.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('requests', sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
    op.add_column('requests', sa.Column('lease_holder', sa.String(length=64), nullable=True))
    op.add_column(
        'requests', sa.Column('attempts', sa.Integer(), server_default='0', nullable=False)
    )


def downgrade() -> None:
    with op.batch_alter_table('requests') as batch:
        batch.drop_column('attempts')
        batch.drop_column('lease_holder')
        batch.drop_column('lease_until')
