"""notifications: sweep leases, announced job states, idle alerts and digests

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:00:00

Hand-written; `tests/notify/test_tables.py` checks it matches `approvals/sweep_tables.py`.
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('notify_sweeps',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('next_due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('notify_job_states',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('job_id')
    )
    op.create_table('notify_compute_alerts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('workspace', sa.String(length=64), nullable=False),
    sa.Column('compute', sa.String(length=255), nullable=False),
    sa.Column('idle_seen_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('alerted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('alerted_fingerprint', sa.String(length=255), nullable=True),
    sa.Column('snoozed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('snoozed_fingerprint', sa.String(length=255), nullable=True),
    sa.Column('snoozed_by', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('workspace', 'compute', name='uq_notify_compute')
    )
    op.create_table('notify_idle_digests',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('workspace', sa.String(length=64), nullable=False),
    sa.Column('slot', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('workspace', 'slot', name='uq_notify_digest_slot')
    )
    op.create_table('notify_idle_items',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('digest_id', sa.Integer(), nullable=False),
    sa.Column('workspace', sa.String(length=64), nullable=False),
    sa.Column('compute', sa.String(length=255), nullable=False),
    sa.Column('fingerprint', sa.String(length=255), nullable=False),
    sa.Column('finding', sa.JSON(), nullable=False),
    sa.Column('handled_by', sa.String(length=128), nullable=True),
    sa.Column('handled_note', sa.String(length=255), nullable=True),
    sa.Column('handled_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['digest_id'], ['notify_idle_digests.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('digest_id', 'compute', name='uq_notify_item_once')
    )
    op.create_index(op.f('ix_notify_idle_items_digest_id'), 'notify_idle_items', ['digest_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_notify_idle_items_digest_id'), table_name='notify_idle_items')
    op.drop_table('notify_idle_items')
    op.drop_table('notify_idle_digests')
    op.drop_table('notify_compute_alerts')
    op.drop_table('notify_job_states')
    op.drop_table('notify_sweeps')
