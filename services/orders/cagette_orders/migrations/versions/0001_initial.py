"""Groups and payment settings, members, catalogs, products, distributions, orders, amendments,
subscriptions; outbox and inbox.

The initial schema, frozen: explicit operations, never built from the current table
definitions, so a later change of tables.py is a new migration (tests/test_migrations.py fails
until it exists).

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "basket_locks",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("distribution_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("validated_by", sa.Uuid(), nullable=False),
        sa.Column("validated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "distribution_id", "member_id"),
    )
    op.create_table(
        "groups",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("payments_enabled", sa.Boolean(), nullable=False),
        sa.Column("payment_methods", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("allow_negative_money_pot", sa.Boolean(), nullable=False),
        sa.Column("cheque_payee", sa.Text(), nullable=True),
        sa.Column("transfer_iban", sa.Text(), nullable=True),
        sa.Column("transfer_bic", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("card_payments_configured", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("order_cutoff_hours", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("group_id"),
    )
    op.create_table(
        "inbox_messages",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("routing_key", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("correlation_id", sa.Text(), nullable=False),
        sa.Column(
            "headers", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(
        "outbox_messages_unpublished",
        "outbox_messages",
        ["next_attempt_at", "id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "catalogs",
        sa.Column("catalog_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('variable', 'subscription')", name="catalogs_kind"),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.group_id"],
        ),
        sa.PrimaryKeyConstraint("catalog_id"),
    )
    op.create_table(
        "distributions",
        sa.Column("distribution_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("place", sa.Text(), nullable=False),
        sa.Column("orders_open_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("orders_close_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.group_id"],
        ),
        sa.PrimaryKeyConstraint("distribution_id"),
    )
    op.create_table(
        "members",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.group_id"],
        ),
        sa.PrimaryKeyConstraint("group_id", "member_id"),
    )
    op.create_table(
        "distribution_catalogs",
        sa.Column("distribution_id", sa.Uuid(), nullable=False),
        sa.Column("catalog_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["catalog_id"],
            ["catalogs.catalog_id"],
        ),
        sa.ForeignKeyConstraint(
            ["distribution_id"],
            ["distributions.distribution_id"],
        ),
        sa.PrimaryKeyConstraint("distribution_id", "catalog_id"),
    )
    op.create_table(
        "orders",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("distribution_id", sa.Uuid(), nullable=True),
        sa.Column("payment_method", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("total_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("hold_id", sa.Uuid(), nullable=True),
        sa.Column("flagged_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("total_amount > 0", name="orders_total_positive"),
        sa.ForeignKeyConstraint(
            ["group_id", "member_id"],
            ["members.group_id", "members.member_id"],
        ),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index(
        "orders_one_basket",
        "orders",
        ["group_id", "member_id", "distribution_id"],
        unique=True,
        postgresql_where=sa.text(
            "status IN ('confirmed', 'awaiting_payment', 'payment_failed') AND flagged_reason IS NULL"
        ),
    )
    op.create_table(
        "products",
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("catalog_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("fee_rate", sa.Numeric(precision=6, scale=4), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("unit IN ('piece', 'kg', 'litre')", name="products_unit"),
        sa.CheckConstraint("unit_price > 0", name="products_price_positive"),
        sa.ForeignKeyConstraint(
            ["catalog_id"],
            ["catalogs.catalog_id"],
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.group_id"],
        ),
        sa.PrimaryKeyConstraint("product_id"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("contract_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("payment_method", sa.Text(), nullable=True),
        sa.Column("distribution_ids", sa.ARRAY(sa.Uuid()), nullable=False),
        sa.Column("total_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["catalogs.catalog_id"],
        ),
        sa.ForeignKeyConstraint(
            ["group_id", "member_id"],
            ["members.group_id", "members.member_id"],
        ),
        sa.PrimaryKeyConstraint("subscription_id"),
    )
    op.create_index("subscriptions_one_per_contract", "subscriptions", ["contract_id", "member_id"], unique=True)
    op.create_table(
        "order_amendments",
        sa.Column("amendment_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("added_total", sa.BigInteger(), nullable=False),
        sa.Column("hold_id", sa.Uuid(), nullable=True),
        sa.Column("flagged_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("added_total > 0", name="order_amendments_added_positive"),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.order_id"],
        ),
        sa.PrimaryKeyConstraint("amendment_id"),
    )
    op.create_table(
        "subscription_amendments",
        sa.Column("amendment_id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("distribution_count", sa.Integer(), nullable=False),
        sa.Column("added_total", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.subscription_id"],
        ),
        sa.PrimaryKeyConstraint("amendment_id"),
    )
    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=True),
        sa.Column("product_name", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=12, scale=3), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("fee_rate", sa.Numeric(precision=6, scale=4), nullable=False),
        sa.Column("line_total", sa.BigInteger(), nullable=False),
        sa.Column("amendment_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["amendment_id"],
            ["order_amendments.amendment_id"],
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.order_id"],
        ),
        sa.PrimaryKeyConstraint("order_id", "line_number"),
    )
    op.create_table(
        "subscription_lines",
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("product_name", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=12, scale=3), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("fee_rate", sa.Numeric(precision=6, scale=4), nullable=False),
        sa.Column("line_total", sa.BigInteger(), nullable=False),
        sa.Column("amendment_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["amendment_id"],
            ["subscription_amendments.amendment_id"],
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.subscription_id"],
        ),
        sa.PrimaryKeyConstraint("subscription_id", "line_number"),
    )


def downgrade() -> None:
    op.drop_table("subscription_lines")
    op.drop_table("order_lines")
    op.drop_table("subscription_amendments")
    op.drop_table("order_amendments")
    op.drop_index("subscriptions_one_per_contract", table_name="subscriptions")
    op.drop_table("subscriptions")
    op.drop_table("products")
    op.drop_index(
        "orders_one_basket",
        table_name="orders",
        postgresql_where=sa.text(
            "status IN ('confirmed', 'awaiting_payment', 'payment_failed') AND flagged_reason IS NULL"
        ),
    )
    op.drop_table("orders")
    op.drop_table("distribution_catalogs")
    op.drop_table("members")
    op.drop_table("distributions")
    op.drop_table("catalogs")
    op.drop_index(
        "outbox_messages_unpublished", table_name="outbox_messages", postgresql_where=sa.text("published_at IS NULL")
    )
    op.drop_table("outbox_messages")
    op.drop_table("inbox_messages")
    op.drop_table("groups")
    op.drop_table("basket_locks")
