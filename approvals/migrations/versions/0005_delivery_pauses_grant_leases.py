"""delivery pauses shared by the outbox workers; revocation leases on grants

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 12:00:00

Hand-written; `tests/approvals/test_migrations.py` checks it matches `approvals/tables.py`.
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('delivery_pauses',
    sa.Column('scope', sa.String(length=255), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cause', sa.String(length=16), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('scope')
    )
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('waiting_for', sa.String(length=255), nullable=True))
        batch.create_index(batch.f('ix_outbox_waiting_for'), ['waiting_for'], unique=False)
    with op.batch_alter_table('grants') as batch:
        batch.add_column(sa.Column('revoking_by', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('revoke_lease_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('grants') as batch:
        batch.drop_column('revoke_lease_until')
        batch.drop_column('revoking_by')
    with op.batch_alter_table('outbox') as batch:
        batch.drop_index(batch.f('ix_outbox_waiting_for'))
        batch.drop_column('waiting_for')
    op.drop_table('delivery_pauses')
