"""Local copies of groups and members, owed items, payments and their transitions, references,
baskets, card payments, provider events, card jobs; outbox and inbox.

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
        "basket_history",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("distribution_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("by", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("difference", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "baskets",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("distribution_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.Text(), server_default="to_validate", nullable=False),
        sa.Column("validated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("validated_by", sa.Uuid(), nullable=True),
        sa.CheckConstraint("state IN ('to_validate', 'validated')", name="baskets_state"),
        sa.PrimaryKeyConstraint("group_id", "distribution_id", "member_id"),
    )
    op.create_table(
        "card_dues",
        sa.Column("due_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("amendment_id", sa.Uuid(), nullable=True),
        sa.Column("distribution_id", sa.Uuid(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("lines", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('order', 'amendment')", name="card_dues_kind"),
        sa.CheckConstraint("amount > 0", name="card_dues_positive"),
        sa.PrimaryKeyConstraint("due_id"),
    )
    op.create_index("card_dues_order", "card_dues", ["group_id", "order_id"], unique=False)
    op.create_table(
        "card_settings",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("stripe_account", sa.Text(), nullable=True),
        sa.Column("updated_by", sa.Uuid(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id"),
    )
    op.create_table(
        "groups",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payments_enabled", sa.Boolean(), nullable=False),
        sa.Column(
            "payment_methods",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("cheque_payee", sa.Text(), nullable=True),
        sa.Column("transfer_iban", sa.Text(), nullable=True),
        sa.Column("settings_at", sa.DateTime(timezone=True), nullable=False),
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
        "members",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("role", sa.Text(), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "member_id"),
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
        "owed_items",
        sa.Column("item_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("distribution_id", sa.Uuid(), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("amendment_id", sa.Uuid(), nullable=True),
        sa.Column("subscription_id", sa.Uuid(), nullable=True),
        sa.Column("contract_id", sa.Uuid(), nullable=True),
        sa.Column("contract_name", sa.Text(), nullable=True),
        sa.Column(
            "distribution_ids",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("distribution_count", sa.Integer(), nullable=True),
        sa.Column("payment_method", sa.Text(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("lines", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('order', 'amendment', 'subscription')", name="owed_items_kind"),
        sa.CheckConstraint("amount > 0", name="owed_items_positive"),
        sa.PrimaryKeyConstraint("item_id"),
    )
    op.create_index("owed_items_basket", "owed_items", ["group_id", "distribution_id", "member_id"], unique=False)
    op.create_index("owed_items_contract", "owed_items", ["group_id", "contract_id"], unique=False)
    op.create_table(
        "payment_batches",
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("client_key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("contract_id", sa.Uuid(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("batch_id"),
        sa.UniqueConstraint("group_id", "client_key", name="payment_batches_client_key"),
    )
    op.create_table(
        "provider_events",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=True),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("provider_created", sa.BigInteger(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("outcome IN ('applied', 'ignored', 'parked')", name="provider_events_outcome"),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index(
        "provider_events_parked",
        "provider_events",
        ["received_at"],
        unique=False,
        postgresql_where=sa.text("outcome = 'parked'"),
    )
    op.create_table(
        "card_payments",
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("due_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("amendment_id", sa.Uuid(), nullable=True),
        sa.Column("distribution_id", sa.Uuid(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("stripe_account", sa.Text(), nullable=True),
        sa.Column("checkout_session_id", sa.Text(), nullable=True),
        sa.Column("checkout_url", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payment_intent_id", sa.Text(), nullable=True),
        sa.Column("charge_id", sa.Text(), nullable=True),
        sa.Column("amount_refunded", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("fee_amount", sa.BigInteger(), nullable=True),
        sa.Column("fee_currency", sa.String(length=3), nullable=True),
        sa.Column("dispute_id", sa.Text(), nullable=True),
        sa.Column("dispute_reason", sa.Text(), nullable=True),
        sa.Column("dispute_status", sa.Text(), nullable=True),
        sa.Column("disputed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('initiated', 'failed', 'expired', 'succeeded')", name="card_payments_state"),
        sa.CheckConstraint(
            "amount > 0 AND amount_refunded >= 0 AND amount_refunded <= amount", name="card_payments_amounts"
        ),
        sa.ForeignKeyConstraint(
            ["due_id"],
            ["card_dues.due_id"],
        ),
        sa.PrimaryKeyConstraint("payment_id"),
        sa.UniqueConstraint("checkout_session_id"),
        sa.UniqueConstraint("due_id", "attempt", name="card_payments_attempt"),
        sa.UniqueConstraint("payment_intent_id"),
    )
    op.create_index("card_payments_charge", "card_payments", ["charge_id"], unique=False)
    op.create_table(
        "payments",
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("declared_amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("paid_on", sa.Date(), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("amendment_id", sa.Uuid(), nullable=True),
        sa.Column("subscription_id", sa.Uuid(), nullable=True),
        sa.Column("distribution_id", sa.Uuid(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_key", sa.Text(), nullable=True),
        sa.Column("request_hash", sa.Text(), nullable=True),
        sa.Column("batch_id", sa.Uuid(), nullable=True),
        sa.Column("reverses_payment_id", sa.Uuid(), nullable=True),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("provider_payment_id", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(kind = 'payment' AND amount > 0) OR (kind = 'refund' AND amount < 0)", name="payments_sign"
        ),
        sa.CheckConstraint("kind IN ('payment', 'refund')", name="payments_kind"),
        sa.CheckConstraint("state IN ('declared', 'received', 'cancelled')", name="payments_state"),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["payment_batches.batch_id"],
        ),
        sa.ForeignKeyConstraint(
            ["reverses_payment_id"],
            ["payments.payment_id"],
        ),
        sa.PrimaryKeyConstraint("payment_id"),
        sa.UniqueConstraint("group_id", "source_key", name="payments_source_key"),
        sa.UniqueConstraint("provider", "provider_payment_id", name="payments_provider_payment"),
        sa.UniqueConstraint("reference", name="payments_reference"),
    )
    op.create_index("payments_basket", "payments", ["group_id", "distribution_id", "member_id"], unique=False)
    op.create_index("payments_member", "payments", ["group_id", "member_id", "created_at"], unique=False)
    op.create_index(
        "payments_one_reversal",
        "payments",
        ["reverses_payment_id"],
        unique=True,
        postgresql_where=sa.text("reverses_payment_id IS NOT NULL"),
    )
    op.create_index("payments_subscription", "payments", ["group_id", "subscription_id"], unique=False)
    op.create_table(
        "card_jobs",
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["card_payments.payment_id"],
        ),
        sa.PrimaryKeyConstraint("payment_id", "kind"),
    )
    op.create_index(
        "card_jobs_due", "card_jobs", ["next_attempt_at"], unique=False, postgresql_where=sa.text("done_at IS NULL")
    )
    op.create_table(
        "card_payment_history",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("provider_event_id", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["card_payments.payment_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_card_payment_history_payment_id"), "card_payment_history", ["payment_id"], unique=False)
    op.create_table(
        "card_refund_requests",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("client_key", sa.Text(), nullable=True),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("provider_refund_id", sa.Text(), nullable=True),
        sa.Column("provider_status", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.Uuid(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name="card_refund_requests_positive"),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["card_payments.payment_id"],
        ),
        sa.PrimaryKeyConstraint("request_id"),
        sa.UniqueConstraint("payment_id", "client_key", name="card_refund_requests_client_key"),
    )
    op.create_table(
        "payment_transitions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("amount_before", sa.BigInteger(), nullable=True),
        sa.Column("amount_after", sa.BigInteger(), nullable=False),
        sa.Column("method_before", sa.Text(), nullable=True),
        sa.Column("method_after", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("by", sa.Uuid(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.payment_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_payment_transitions_payment_id"), "payment_transitions", ["payment_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_payment_transitions_payment_id"), table_name="payment_transitions")
    op.drop_table("payment_transitions")
    op.drop_table("card_refund_requests")
    op.drop_index(op.f("ix_card_payment_history_payment_id"), table_name="card_payment_history")
    op.drop_table("card_payment_history")
    op.drop_index("card_jobs_due", table_name="card_jobs", postgresql_where=sa.text("done_at IS NULL"))
    op.drop_table("card_jobs")
    op.drop_index("payments_subscription", table_name="payments")
    op.drop_index(
        "payments_one_reversal", table_name="payments", postgresql_where=sa.text("reverses_payment_id IS NOT NULL")
    )
    op.drop_index("payments_member", table_name="payments")
    op.drop_index("payments_basket", table_name="payments")
    op.drop_table("payments")
    op.drop_index("card_payments_charge", table_name="card_payments")
    op.drop_table("card_payments")
    op.drop_index(
        "provider_events_parked", table_name="provider_events", postgresql_where=sa.text("outcome = 'parked'")
    )
    op.drop_table("provider_events")
    op.drop_table("payment_batches")
    op.drop_index("owed_items_contract", table_name="owed_items")
    op.drop_index("owed_items_basket", table_name="owed_items")
    op.drop_table("owed_items")
    op.drop_index(
        "outbox_messages_unpublished", table_name="outbox_messages", postgresql_where=sa.text("published_at IS NULL")
    )
    op.drop_table("outbox_messages")
    op.drop_table("members")
    op.drop_table("inbox_messages")
    op.drop_table("groups")
    op.drop_table("card_settings")
    op.drop_index("card_dues_order", table_name="card_dues")
    op.drop_table("card_dues")
    op.drop_table("baskets")
    op.drop_table("basket_history")
