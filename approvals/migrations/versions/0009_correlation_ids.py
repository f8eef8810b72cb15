"""audit_events and outbox: the correlation id of the work that caused them

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 14:40:00

Hand-written; `tests/approvals/test_migrations.py` checks it matches `approvals/tables.py`.
Rows written before it have none (NULL).
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'audit_events', sa.Column('correlation_id', sa.String(length=255), nullable=True)
    )
    op.create_index(
        'ix_audit_events_correlation_id', 'audit_events', ['correlation_id'], unique=False
    )
    op.add_column('outbox', sa.Column('correlation_id', sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('correlation_id')
    op.drop_index('ix_audit_events_correlation_id', table_name='audit_events')
    with op.batch_alter_table('audit_events') as batch:
        batch.drop_column('correlation_id')
