"""slack edge: cards, sent steps, inbound dedupe, resolved e-mails

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:00:00

Hand-written; `tests/slack/test_tables.py` checks it matches `approvals/slack_tables.py`.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('slack_cards',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('ts', sa.String(length=32), nullable=False),
    sa.Column('placement', sa.String(length=16), nullable=False),
    sa.Column('posted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('shown_version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'channel', name='uq_slack_card_place')
    )
    op.create_index(op.f('ix_slack_cards_request_id'), 'slack_cards', ['request_id'], unique=False)
    op.create_table('slack_sent_steps',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=True),
    sa.Column('ts', sa.String(length=32), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('outbox_id', 'step', name='uq_slack_step_once')
    )
    op.create_index(op.f('ix_slack_sent_steps_outbox_id'), 'slack_sent_steps', ['outbox_id'], unique=False)
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
    op.create_table('slack_people',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('email', sa.String(length=255), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email')
    )
    op.create_index(op.f('ix_slack_people_user_id'), 'slack_people', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_slack_people_user_id'), table_name='slack_people')
    op.drop_table('slack_people')
    op.drop_index(op.f('ix_slack_inbound_received_at'), table_name='slack_inbound')
    op.drop_table('slack_inbound')
    op.drop_index(op.f('ix_slack_sent_steps_outbox_id'), table_name='slack_sent_steps')
    op.drop_table('slack_sent_steps')
    op.drop_index(op.f('ix_slack_cards_request_id'), table_name='slack_cards')
    op.drop_table('slack_cards')
