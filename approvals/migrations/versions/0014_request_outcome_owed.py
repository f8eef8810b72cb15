"""requests.outcome_owed: a reply promised the requester the outcome

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 21:20:00

Hand-written; `tests/approvals/test_migrations.py` checks it matches `approvals/tables.py`.
A command that policy runs at once answers with its outcome, so the outcome is not sent
again. Handled a second time while its request was still in flight (the first handling
died), the command answers "being carried out; you will hear the outcome" instead, and the
process that then finished the request, seeing a policy-run request on its first attempt,
told nobody.
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'requests',
        sa.Column('outcome_owed', sa.Boolean(), server_default='0', nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table('requests') as batch:
        batch.drop_column('outcome_owed')
