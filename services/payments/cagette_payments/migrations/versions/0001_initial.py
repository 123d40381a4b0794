"""Service tables; outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from cagette_runtime.tables import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables()
    # Frozen here (0002 replaces it with owed_items): later migrations own the current tables.
    op.create_table(
        "amounts_owed",
        sa.Column("order_id", sa.Uuid, primary_key=True),
        sa.Column("group_id", sa.Uuid, nullable=False),
        sa.Column("member_id", sa.Uuid, nullable=False),
        sa.Column("distribution_id", sa.Uuid),
        sa.Column("payment_method", sa.Text, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("amounts_owed")
    drop_messaging_tables()
