"""Orders tables (the current model; migrations/versions/ says how each revision got there)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    Uuid,
    func,
    text,
)

from cagette_runtime.columns import basket_columns, group_member_columns, money_columns, payment_instruction_columns
from cagette_runtime.tables import idempotency_keys_table

from .domain import ACTIVE_STATUSES, HoldState

metadata = MetaData()

# Answers kept for Idempotency-Key headers (runtime/idempotency.py).
idempotency_keys = idempotency_keys_table(metadata)

# One active order per basket (domain.ACTIVE_STATUSES), as the partial unique index's predicate.
ACTIVE_ORDER = f"status IN ({', '.join(repr(s.value) for s in ACTIVE_STATUSES)}) AND flagged_reason IS NULL"


def priced_line_columns() -> list[Column[Any]]:
    """What a line of an order or a subscription was priced at, once (contracts.money.line_amount):
    the product's name and price then, the quantity and the line's total."""
    return [
        Column("product_name", Text, nullable=False),
        Column("quantity", Numeric(12, 3), nullable=False),
        Column("unit_price", BigInteger, nullable=False),
        Column("fee_rate", Numeric(6, 4), nullable=False),
        Column("line_total", BigInteger, nullable=False),
    ]


groups = Table(
    "groups",
    metadata,
    Column("group_id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("language", Text, nullable=False),
    Column("time_zone", Text, nullable=False, server_default=text("'Europe/Paris'")),
    Column("payments_enabled", Boolean, nullable=False),
    Column("payment_methods", ARRAY(Text), nullable=False),
    Column("allow_negative_money_pot", Boolean, nullable=False),
    *payment_instruction_columns(),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("card_payments_configured", Boolean, nullable=False, server_default=text("false")),
    Column("order_cutoff_hours", Integer, nullable=False, server_default=text("0")),
    # occurred_at of the last payments.card_settings.changed applied (card_payments_configured follows it).
    Column("card_settings_at", DateTime(timezone=True)),
)

members = Table(
    "members",
    metadata,
    Column("group_id", Uuid, ForeignKey("groups.group_id"), nullable=False),
    Column("member_id", Uuid, nullable=False),
    Column("role", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("language", Text, nullable=False),
    Column("joined_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set when the member left or was removed: the row (and their history) stays, the role does not count.
    Column("left_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("group_id", "member_id"),
    Index("members_by_member", "member_id"),
)

catalogs = Table(
    "catalogs",
    metadata,
    Column("catalog_id", Uuid, primary_key=True),
    Column("group_id", Uuid, ForeignKey("groups.group_id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("kind IN ('variable', 'subscription')", name="catalogs_kind"),
)

products = Table(
    "products",
    metadata,
    Column("product_id", Uuid, primary_key=True),
    Column("catalog_id", Uuid, ForeignKey("catalogs.catalog_id"), nullable=False),
    Column("group_id", Uuid, ForeignKey("groups.group_id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("fee_rate", Numeric(6, 4), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("unit_price > 0", name="products_price_positive"),
    CheckConstraint("unit IN ('piece', 'kg', 'litre')", name="products_unit"),
)

distributions = Table(
    "distributions",
    metadata,
    Column("distribution_id", Uuid, primary_key=True),
    Column("group_id", Uuid, ForeignKey("groups.group_id"), nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("place", Text, nullable=False),
    Column("orders_open_at", DateTime(timezone=True), nullable=False),
    Column("orders_close_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

distribution_catalogs = Table(
    "distribution_catalogs",
    metadata,
    Column("distribution_id", Uuid, ForeignKey("distributions.distribution_id"), nullable=False),
    Column("catalog_id", Uuid, ForeignKey("catalogs.catalog_id"), nullable=False),
    PrimaryKeyConstraint("distribution_id", "catalog_id"),
)

orders = Table(
    "orders",
    metadata,
    Column("order_id", Uuid, primary_key=True),
    *group_member_columns(),
    Column("distribution_id", Uuid),
    Column("payment_method", Text),
    Column("status", Text, nullable=False),
    *money_columns("total_amount"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("hold_id", Uuid),
    Column("flagged_reason", Text),
    ForeignKeyConstraint(["group_id", "member_id"], ["members.group_id", "members.member_id"]),
    # Zero once nothing of the order was delivered (every line taken off it, R6).
    CheckConstraint("total_amount >= 0", name="orders_total_not_negative"),
    Index(
        "orders_one_basket",
        "group_id",
        "member_id",
        "distribution_id",
        unique=True,
        postgresql_where=text(ACTIVE_ORDER),
    ),
)

order_amendments = Table(
    "order_amendments",
    metadata,
    Column("amendment_id", Uuid, primary_key=True),
    Column("order_id", Uuid, ForeignKey("orders.order_id"), nullable=False),
    Column("status", Text, nullable=False),
    Column("added_total", BigInteger, nullable=False),
    Column("hold_id", Uuid),
    Column("flagged_reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("added_total > 0", name="order_amendments_added_positive"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", Uuid, ForeignKey("orders.order_id"), nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("product_id", Uuid),
    *priced_line_columns(),
    Column("amendment_id", Uuid, ForeignKey("order_amendments.amendment_id")),
    PrimaryKeyConstraint("order_id", "line_number"),
)

# Quantities a coordinator took off an order line because the producer could not deliver them
# (R6, added by 0005): the line stays as ordered, each removal is a row with its reason.
order_line_removals = Table(
    "order_line_removals",
    metadata,
    Column("removal_id", Uuid, primary_key=True),
    Column("order_id", Uuid, nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("quantity", Numeric(12, 3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("removed_by", Uuid, nullable=False),
    Column("removed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ForeignKeyConstraint(["order_id", "line_number"], ["order_lines.order_id", "order_lines.line_number"]),
    CheckConstraint("quantity > 0", name="order_line_removals_quantity_positive"),
    CheckConstraint("amount >= 0", name="order_line_removals_amount_not_negative"),
    Index("order_line_removals_by_order", "order_id"),
)

basket_locks = Table(
    "basket_locks",
    metadata,
    *basket_columns(primary_key=True),
    Column("validated_by", Uuid, nullable=False),
    Column("validated_at", DateTime(timezone=True), nullable=False),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("subscription_id", Uuid, primary_key=True),
    Column("group_id", Uuid, nullable=False),
    Column("contract_id", Uuid, ForeignKey("catalogs.catalog_id"), nullable=False),
    Column("member_id", Uuid, nullable=False),
    Column("payment_method", Text),
    Column("distribution_ids", ARRAY(Uuid), nullable=False),
    *money_columns("total_amount"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ForeignKeyConstraint(["group_id", "member_id"], ["members.group_id", "members.member_id"]),
    Index("subscriptions_one_per_contract", "contract_id", "member_id", unique=True),
)

subscription_amendments = Table(
    "subscription_amendments",
    metadata,
    Column("amendment_id", Uuid, primary_key=True),
    Column("subscription_id", Uuid, ForeignKey("subscriptions.subscription_id"), nullable=False),
    Column("distribution_count", Integer, nullable=False),
    Column("added_total", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

subscription_lines = Table(
    "subscription_lines",
    metadata,
    Column("subscription_id", Uuid, ForeignKey("subscriptions.subscription_id"), nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("product_id", Uuid, nullable=False),
    *priced_line_columns(),
    Column("amendment_id", Uuid, ForeignKey("subscription_amendments.amendment_id")),
    PrimaryKeyConstraint("subscription_id", "line_number"),
)

# Every money-pot hold orders asked the ledger for, so that one whose order was never recorded
# is given back (holds.HoldReconciler). The same attempt retried is the same row (its hold_id
# is derived from the attempt: domain.hold_id_for); each ask moves its deadline and expiry on.
# Once an ask is resolved without its order (refused, released, expired), the next ask of the
# same attempt is a new hold (domain.ask_hold_id): the ledger never decides a hold twice.
hold_requests = Table(
    "hold_requests",
    metadata,
    Column("hold_id", Uuid, primary_key=True),
    Column("attempt_id", Uuid, nullable=False),
    *group_member_columns(),
    Column("subject_id", Uuid, nullable=False),  # the order or subscription (PlaceHold.order_id)
    *money_columns(),
    Column("status", Text, nullable=False),
    Column("grant_before", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("asked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("resolved_at", DateTime(timezone=True)),
    CheckConstraint(f"status IN ({', '.join(repr(s.value) for s in HoldState)})", name="hold_requests_known_status"),
    Index("hold_requests_by_attempt", "attempt_id"),
    Index("hold_requests_open", "grant_before", postgresql_where=text(f"status = '{HoldState.ASKED.value}'")),
)
