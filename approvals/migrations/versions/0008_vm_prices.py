"""vm_prices: hourly VM prices from the Azure Retail Prices API, with the day fetched

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 15:00:00

Hand-written; `tests/approvals/test_migrations.py` checks it matches `approvals/sweep_tables.py`.
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'vm_prices',
        sa.Column('region', sa.String(length=64), nullable=False),
        sa.Column('sku', sa.String(length=128), nullable=False),
        sa.Column('low_priority', sa.Boolean(), nullable=False),
        sa.Column('usd_per_hour', sa.Float(), nullable=False),
        sa.Column('meter', sa.String(length=255), nullable=False),
        sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('region', 'sku', 'low_priority'),
    )


def downgrade() -> None:
    op.drop_table('vm_prices')
