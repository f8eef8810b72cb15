"""inbox: prune's index holds done rows only

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 18:30:00

Hand-written; `tests/approvals/test_migrations.py` checks it matches `approvals/tables.py`.
`ix_inbox_finished_at` held an entry for every version of every row: a claim or a
completion changes the row's status, which PostgreSQL cannot update in place (the status is
in the partial indexes' predicates), so each wrote a new entry there too, NULL until done.
Prune looks only for done rows, and the partial index takes one entry per item.
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        'ix_inbox_done',
        'inbox',
        ['finished_at'],
        postgresql_where=sa.text("status = 'done'"),
        sqlite_where=sa.text("status = 'done'"),
    )
    op.drop_index('ix_inbox_finished_at', table_name='inbox')


def downgrade() -> None:
    op.create_index('ix_inbox_finished_at', 'inbox', ['finished_at'], unique=False)
    op.drop_index('ix_inbox_done', table_name='inbox')
