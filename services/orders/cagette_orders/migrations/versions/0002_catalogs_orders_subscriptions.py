"""Group cut-off and card flag, catalogs, products, distributions, baskets, amendments,
basket locks, subscriptions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from cagette_orders.tables import ACTIVE_ORDER, NEW_IN_0002

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("groups", sa.Column("card_payments_configured", sa.Boolean, nullable=False, server_default=sa.text("false")))
    op.add_column("groups", sa.Column("order_cutoff_hours", sa.Integer, nullable=False, server_default=sa.text("0")))
    op.add_column("members", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()))
    op.add_column("orders", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()))
    op.add_column("orders", sa.Column("hold_id", sa.Uuid))
    op.add_column("orders", sa.Column("flagged_reason", sa.Text))
    NEW_IN_0002[0].metadata.create_all(op.get_bind(), tables=list(NEW_IN_0002))
    op.add_column("order_lines", sa.Column("amendment_id", sa.Uuid, sa.ForeignKey("order_amendments.amendment_id")))
    op.create_index(
        "orders_one_basket", "orders", ["group_id", "member_id", "distribution_id"], unique=True,
        postgresql_where=sa.text(ACTIVE_ORDER),
    )


def downgrade() -> None:
    op.drop_index("orders_one_basket", "orders")
    op.drop_column("order_lines", "amendment_id")
    NEW_IN_0002[0].metadata.drop_all(op.get_bind(), tables=list(NEW_IN_0002))
    for table, column in (
        ("orders", "flagged_reason"), ("orders", "hold_id"), ("orders", "updated_at"), ("members", "updated_at"),
        ("groups", "order_cutoff_hours"), ("groups", "card_payments_configured"),
    ):
        op.drop_column(table, column)
