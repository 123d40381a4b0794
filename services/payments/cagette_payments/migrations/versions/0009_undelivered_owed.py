"""A product not delivered (R6, orders.order.line_undelivered) lowers what a basket owes: an owed
item of kind 'undelivered' with a negative amount, beside the order it lowers.

Revision ID: 0009_undelivered_owed
Revises: 0008_announced_account_problem
Create Date: 2026-12-02
"""

from alembic import op

revision = "0009_undelivered_owed"
down_revision = "0008_announced_account_problem"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("owed_items_kind", "owed_items", type_="check")
    op.drop_constraint("owed_items_positive", "owed_items", type_="check")
    op.create_check_constraint(
        "owed_items_kind", "owed_items", "kind IN ('order', 'amendment', 'subscription', 'undelivered')"
    )
    op.create_check_constraint(
        "owed_items_sign",
        "owed_items",
        "(kind = 'undelivered' AND amount < 0) OR (kind <> 'undelivered' AND amount > 0)",
    )


def downgrade() -> None:
    op.drop_constraint("owed_items_sign", "owed_items", type_="check")
    op.drop_constraint("owed_items_kind", "owed_items", type_="check")
    op.execute("DELETE FROM owed_items WHERE kind = 'undelivered'")
    op.create_check_constraint("owed_items_kind", "owed_items", "kind IN ('order', 'amendment', 'subscription')")
    op.create_check_constraint("owed_items_positive", "owed_items", "amount > 0")
