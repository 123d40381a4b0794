"""Products a producer could not deliver (R6): a coordinator takes all or part of an order line
off a confirmed order, with a reason. Each removal is its own row (the line stays as ordered);
the order's total is lowered, down to zero when nothing of it was delivered.

Revision ID: 0005_undelivered_lines
Revises: 0004_group_time_zone
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_undelivered_lines"
down_revision = "0004_group_time_zone"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_line_removals",
        sa.Column("removal_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Numeric(12, 3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("removed_by", sa.Uuid(), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("quantity > 0", name="order_line_removals_quantity_positive"),
        sa.CheckConstraint("amount >= 0", name="order_line_removals_amount_not_negative"),
        sa.ForeignKeyConstraint(["order_id", "line_number"], ["order_lines.order_id", "order_lines.line_number"]),
        sa.PrimaryKeyConstraint("removal_id"),
    )
    op.create_index("order_line_removals_by_order", "order_line_removals", ["order_id"])
    op.drop_constraint("orders_total_positive", "orders", type_="check")
    op.create_check_constraint("orders_total_not_negative", "orders", "total_amount >= 0")


def downgrade() -> None:
    op.drop_constraint("orders_total_not_negative", "orders", type_="check")
    op.create_check_constraint("orders_total_positive", "orders", "total_amount > 0")
    op.drop_index("order_line_removals_by_order", table_name="order_line_removals")
    op.drop_table("order_line_removals")
