"""inbox: partial indexes per claimable state instead of one over (status, available_at)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 21:00:00

Hand-written; `tests/approvals/test_migrations.py` checks it matches `approvals/tables.py`.
The old index held an entry for every version of every row; claims read them through
bitmap scans, which never learn that a handled row's entries are dead, so during a burst
each claim re-read every row handled since the last vacuum. The partial indexes hold only
waiting, running or dead-lettered rows, and are read in order by plain index scans.
"""
from alembic import op
import sqlalchemy as sa
from typing import Any


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def _where(condition: str) -> dict[str, Any]:
    return {
        "postgresql_where": sa.text(condition),
        "sqlite_where": sa.text(condition),
    }


def upgrade() -> None:
    op.create_index(
        'ix_inbox_pending', 'inbox', ['available_at', 'id'], **_where("status = 'pending'")
    )
    op.create_index('ix_inbox_running', 'inbox', ['lease_until'], **_where("status = 'running'"))
    op.create_index('ix_inbox_dead', 'inbox', ['id'], **_where("status = 'dead'"))
    op.drop_index('ix_inbox_claimable', table_name='inbox')


def downgrade() -> None:
    op.create_index('ix_inbox_claimable', 'inbox', ['status', 'available_at'], unique=False)
    op.drop_index('ix_inbox_dead', table_name='inbox')
    op.drop_index('ix_inbox_running', table_name='inbox')
    op.drop_index('ix_inbox_pending', table_name='inbox')
