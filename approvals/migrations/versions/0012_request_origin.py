"""requests.origin: the inbound delivery that opened a request, unique

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 03:00:00

Hand-written; `tests/approvals/test_migrations.py` checks it matches `approvals/tables.py`.
A slash command, click or form handled a second time (its worker died before marking it
done, or its lease ran out) opened a second request, with its own card and, when policy
ran it at once, a second job or datastore. Rows written before it have no origin.
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('requests', sa.Column('origin', sa.String(length=255), nullable=True))
    op.create_index(op.f('ix_requests_origin'), 'requests', ['origin'], unique=True)


def downgrade() -> None:
    op.drop_index(op.f('ix_requests_origin'), table_name='requests')
    with op.batch_alter_table('requests') as batch:
        batch.drop_column('origin')
