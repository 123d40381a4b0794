"""What is owed per basket and subscription, groups and members, payments and their
transitions, baskets and their validation history; amounts_owed folded into owed_items.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from alembic import op

from cagette_payments.tables import NEW_IN_0002, metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    metadata.create_all(bind, tables=NEW_IN_0002)
    # Orders recorded before this migration keep what they owe (their lines were not kept).
    op.execute(
        """
        INSERT INTO owed_items (item_id, kind, group_id, member_id, distribution_id, order_id, payment_method,
                                amount, currency, lines, event_id, occurred_at, recorded_at)
        SELECT order_id, 'order', group_id, member_id, distribution_id, order_id, payment_method,
               amount, currency, '[]'::jsonb, order_id, recorded_at, recorded_at
        FROM amounts_owed
        """
    )
    op.drop_table("amounts_owed")


def downgrade() -> None:
    import sqlalchemy as sa

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
    op.execute(
        """
        INSERT INTO amounts_owed (order_id, group_id, member_id, distribution_id, payment_method, amount, currency, recorded_at)
        SELECT item_id, group_id, member_id, distribution_id, payment_method, amount, currency, recorded_at
        FROM owed_items WHERE kind = 'order'
        """
    )
    metadata.drop_all(op.get_bind(), tables=NEW_IN_0002)
