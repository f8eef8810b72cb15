"""inbox: inbound items kept before they are acknowledged, claimed by workers

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 12:00:00

Hand-written; `tests/approvals/test_migrations.py` checks it matches the models. The inbox's
unique delivery key replaces `slack_inbound`, which only remembered keys.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('delivery_key', sa.String(length=255), nullable=False),
    sa.Column('handler', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('delivery_key')
    )
    op.create_index('ix_inbox_claimable', 'inbox', ['status', 'available_at'], unique=False)
    op.create_index(op.f('ix_inbox_finished_at'), 'inbox', ['finished_at'], unique=False)
    op.drop_index(op.f('ix_slack_inbound_received_at'), table_name='slack_inbound')
    op.drop_table('slack_inbound')


def downgrade() -> None:
    op.create_table('slack_inbound',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('delivery_key', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('retry_num', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('delivery_key')
    )
    op.create_index(op.f('ix_slack_inbound_received_at'), 'slack_inbound', ['received_at'], unique=False)
    op.drop_index(op.f('ix_inbox_finished_at'), table_name='inbox')
    op.drop_index('ix_inbox_claimable', table_name='inbox')
    op.drop_table('inbox')
