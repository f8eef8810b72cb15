"""grants that end with the work, escalation, break-glass review, drift findings

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-03 15:00:00

Hand-written; `tests/approvals/test_migrations.py` checks it matches `approvals/tables.py`.
Existing grants are time-bound (`until_done` false).
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'grants', sa.Column('until_done', sa.Boolean(), server_default='0', nullable=False)
    )
    op.add_column('grants', sa.Column('work_seen_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('grants', sa.Column('end_reason', sa.String(length=32), nullable=True))
    op.create_table(
        'drift_findings',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('workspace', sa.String(length=64), nullable=False),
        sa.Column('found_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('compute', sa.String(length=64), nullable=True),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('handled_by', sa.String(length=128), nullable=True),
        sa.Column('request_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['request_id'], ['requests.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_drift_findings_workspace', 'drift_findings', ['workspace'])
    op.add_column('requests', sa.Column('nudged_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        'requests', sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_index('ix_drift_findings_workspace', table_name='drift_findings')
    op.drop_table('drift_findings')
    with op.batch_alter_table('requests') as batch:
        batch.drop_column('escalated_at')
        batch.drop_column('nudged_at')
    with op.batch_alter_table('grants') as batch:
        batch.drop_column('end_reason')
        batch.drop_column('work_seen_at')
        batch.drop_column('until_done')
