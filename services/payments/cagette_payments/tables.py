"""Payments tables (own database; no other service reads them).

Amounts are BIGINT minor units with a currency column, never floats. Payments are never deleted
and their history is in `payment_transitions`; received and cancelled rows are final.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# Local copy of each group's settings, from GroupSettingsChanged (no synchronous calls).
groups = Table(
    "groups",
    metadata,
    Column("group_id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payments_enabled", Boolean, nullable=False),
    Column("payment_methods", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("cheque_payee", Text),
    Column("transfer_iban", Text),
    Column("settings_at", DateTime(timezone=True), nullable=False),  # occurred_at of the event applied
)

# Members known in each group, from MemberJoined (and from their orders, when those come first).
members = Table(
    "members",
    metadata,
    Column("group_id", Uuid, primary_key=True),
    Column("member_id", Uuid, primary_key=True),
    Column("name", Text, nullable=False, server_default=""),
    Column("role", Text),
    Column("joined_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# What is owed: one row per confirmed order, amendment or subscription.
owed_items = Table(
    "owed_items",
    metadata,
    Column("item_id", Uuid, primary_key=True),  # order_id, amendment_id or subscription_id
    Column("kind", Text, nullable=False),  # order | amendment | subscription
    Column("group_id", Uuid, nullable=False),
    Column("member_id", Uuid, nullable=False),
    Column("distribution_id", Uuid),  # orders and amendments of a distribution
    Column("order_id", Uuid),
    Column("amendment_id", Uuid),
    Column("subscription_id", Uuid),
    Column("contract_id", Uuid),
    Column("contract_name", Text),
    Column("distribution_ids", JSONB, nullable=False, server_default=text("'[]'::jsonb")),  # subscriptions
    Column("distribution_count", Integer),
    Column("payment_method", Text),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("lines", JSONB, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("kind IN ('order', 'amendment', 'subscription')", name="owed_items_kind"),
    CheckConstraint("amount > 0", name="owed_items_positive"),
)
Index("owed_items_basket", owed_items.c.group_id, owed_items.c.distribution_id, owed_items.c.member_id)
Index("owed_items_contract", owed_items.c.group_id, owed_items.c.contract_id)

# One member's basket for one distribution, with its validation state (R20).
baskets = Table(
    "baskets",
    metadata,
    Column("group_id", Uuid, primary_key=True),
    Column("distribution_id", Uuid, primary_key=True),
    Column("member_id", Uuid, primary_key=True),
    Column("state", Text, nullable=False, server_default="to_validate"),
    Column("validated_at", DateTime(timezone=True)),
    Column("validated_by", Uuid),
    CheckConstraint("state IN ('to_validate', 'validated')", name="baskets_state"),
)

# Every validation and undo, who and when (undo never touches payments).
basket_history = Table(
    "basket_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("group_id", Uuid, nullable=False),
    Column("distribution_id", Uuid, nullable=False),
    Column("member_id", Uuid, nullable=False),
    Column("action", Text, nullable=False),  # validated | unvalidated
    Column("by", Uuid, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("difference", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
)

# A mass entry (one request, many rows), idempotent by its client key.
payment_batches = Table(
    "payment_batches",
    metadata,
    Column("batch_id", Uuid, primary_key=True),
    Column("group_id", Uuid, nullable=False),
    Column("client_key", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("contract_id", Uuid),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("group_id", "client_key", name="payment_batches_client_key"),
)

payments = Table(
    "payments",
    metadata,
    Column("payment_id", Uuid, primary_key=True),
    Column("group_id", Uuid, nullable=False),
    Column("member_id", Uuid, nullable=False),
    Column("kind", Text, nullable=False),  # payment | refund
    Column("state", Text, nullable=False),  # declared | received | cancelled
    Column("method", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),  # signed: refunds negative; current (corrected) amount
    Column("declared_amount", BigInteger),  # what was declared, for a payment that was declared
    Column("currency", String(3), nullable=False),
    Column("reference", Text),  # compact RF reference (cheques, transfers)
    Column("label", Text),  # e.g. the cheque number
    Column("reason", Text),  # refunds, reversals, cancellations
    Column("paid_on", Date),
    Column("order_id", Uuid),
    Column("amendment_id", Uuid),
    Column("subscription_id", Uuid),
    Column("distribution_id", Uuid),
    Column("source", Text, nullable=False),  # order | amendment | manual | basket | mass_entry | reversal
    Column("source_key", Text),  # idempotency: "order:<id>", "amendment:<id>", "client:<key>"
    Column("request_hash", Text),  # for client-keyed manual entries
    Column("batch_id", Uuid, ForeignKey("payment_batches.batch_id")),
    Column("reverses_payment_id", Uuid, ForeignKey("payments.payment_id")),
    # Room for card payments (separate issue): provider and its payment id.
    Column("provider", Text),
    Column("provider_payment_id", Text),
    Column("created_by", Uuid),  # null when created from an event
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("kind IN ('payment', 'refund')", name="payments_kind"),
    CheckConstraint("state IN ('declared', 'received', 'cancelled')", name="payments_state"),
    CheckConstraint("(kind = 'payment' AND amount > 0) OR (kind = 'refund' AND amount < 0)", name="payments_sign"),
    UniqueConstraint("reference", name="payments_reference"),
    UniqueConstraint("group_id", "source_key", name="payments_source_key"),
    UniqueConstraint("provider", "provider_payment_id", name="payments_provider_payment"),
)
Index("payments_basket", payments.c.group_id, payments.c.distribution_id, payments.c.member_id)
Index("payments_member", payments.c.group_id, payments.c.member_id, payments.c.created_at)
Index("payments_subscription", payments.c.group_id, payments.c.subscription_id)
Index("payments_one_reversal", payments.c.reverses_payment_id, unique=True, postgresql_where=payments.c.reverses_payment_id.isnot(None))

# Every state change of every payment: who, when, from, to, amounts and methods (B3).
payment_transitions = Table(
    "payment_transitions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("payment_id", Uuid, ForeignKey("payments.payment_id"), nullable=False, index=True),
    Column("from_state", Text),  # null: created
    Column("to_state", Text, nullable=False),
    Column("amount_before", BigInteger),
    Column("amount_after", BigInteger, nullable=False),
    Column("method_before", Text),
    Column("method_after", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("by", Uuid),  # null: from an event
    Column("at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=False, server_default=""),
)

NEW_IN_0002 = [groups, members, owed_items, baskets, basket_history, payment_batches, payments, payment_transitions]
