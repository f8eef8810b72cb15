"""slack_sent_steps: a post is recorded before it is made, so one in doubt can be found

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 18:00:00

Hand-written; `tests/approvals/test_migrations.py` checks it matches `approvals/tables.py`.
Rows written before it were recorded after their post: they keep `done_at` and have no
`attempted_at`.
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('slack_sent_steps') as batch:
        batch.add_column(sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=True))
        batch.alter_column('done_at', existing_type=sa.DateTime(timezone=True), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM slack_sent_steps WHERE done_at IS NULL")
    with op.batch_alter_table('slack_sent_steps') as batch:
        batch.alter_column('done_at', existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.drop_column('attempted_at')
