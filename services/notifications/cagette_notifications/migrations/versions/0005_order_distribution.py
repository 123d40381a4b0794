"""The order email names its distribution: when and where, kept with the order.

Revision ID: 0005_order_distribution
Revises: 0004_memberships
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_order_distribution"
down_revision = "0004_memberships"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("known_orders", sa.Column("distribution_starts_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("known_orders", sa.Column("distribution_place", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("known_orders", "distribution_place")
    op.drop_column("known_orders", "distribution_starts_at")
