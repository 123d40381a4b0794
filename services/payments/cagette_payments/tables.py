"""Payments tables (own database; no other service reads them).

Amounts are BIGINT minor units with a currency column, never floats. Payments are never deleted
and their history is in `payment_transitions`; received and cancelled rows are final.
"""

from typing import Any

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

from cagette_runtime.columns import (
    basket_columns,
    group_member_columns,
    money_columns,
    payment_instruction_columns,
    retry_columns,
)
from cagette_runtime.memberships import memberships_table
from cagette_runtime.tables import idempotency_keys_table

metadata = MetaData()

# Answers kept for Idempotency-Key headers (runtime/idempotency.py).
idempotency_keys = idempotency_keys_table(metadata)

# Who holds which role in which group now, from orders.member.* (runtime.memberships).
memberships = memberships_table(metadata)


def state_change_columns(payments_table: str) -> list[Column[Any]]:
    """The first columns of a payment's history: one row per state change of a payment of
    `payments_table`, from its state before (NULL: created) to its state after."""
    return [
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("payment_id", Uuid, ForeignKey(f"{payments_table}.payment_id"), nullable=False, index=True),
        Column("from_state", Text),
        Column("to_state", Text, nullable=False),
    ]


def card_due_columns() -> list[Column[Any]]:
    """What is to be paid by card, as orders asked it (OrderAwaitingPayment): whose, for which
    order (and amendment) of which distribution, how much. A card payment carries its due's."""
    return [
        *group_member_columns(),
        Column("order_id", Uuid, nullable=False),
        Column("amendment_id", Uuid),
        Column("distribution_id", Uuid),
        *money_columns(),
    ]


# Local copy of each group's settings, from GroupSettingsChanged (no synchronous calls).
groups = Table(
    "groups",
    metadata,
    Column("group_id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payments_enabled", Boolean, nullable=False),
    Column("payment_methods", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    *payment_instruction_columns(),
    Column("settings_at", DateTime(timezone=True), nullable=False),  # occurred_at of the event applied
)

# Members known in each group, from MemberJoined (and from their orders, when those come first).
members = Table(
    "members",
    metadata,
    *group_member_columns(primary_key=True),
    Column("name", Text, nullable=False, server_default=""),
    Column("role", Text),
    Column("joined_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# What is owed: one row per confirmed order, amendment or subscription, and one (negative) per
# product a coordinator took off an order as not delivered (R6, added by 0009).
owed_items = Table(
    "owed_items",
    metadata,
    Column("item_id", Uuid, primary_key=True),  # order_id, amendment_id, subscription_id or removal_id
    Column("kind", Text, nullable=False),  # order | amendment | subscription | undelivered
    *group_member_columns(),
    Column("distribution_id", Uuid),  # orders and amendments of a distribution
    Column("order_id", Uuid),
    Column("amendment_id", Uuid),
    Column("subscription_id", Uuid),
    Column("contract_id", Uuid),
    Column("contract_name", Text),
    Column("distribution_ids", JSONB, nullable=False, server_default=text("'[]'::jsonb")),  # subscriptions
    Column("distribution_count", Integer),
    Column("payment_method", Text),
    *money_columns(),
    Column("lines", JSONB, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("kind IN ('order', 'amendment', 'subscription', 'undelivered')", name="owed_items_kind"),
    CheckConstraint(
        "(kind = 'undelivered' AND amount < 0) OR (kind <> 'undelivered' AND amount > 0)", name="owed_items_sign"
    ),
)
Index("owed_items_basket", owed_items.c.group_id, owed_items.c.distribution_id, owed_items.c.member_id)
Index("owed_items_contract", owed_items.c.group_id, owed_items.c.contract_id)

# One member's basket for one distribution, with its validation state (R20).
baskets = Table(
    "baskets",
    metadata,
    *basket_columns(primary_key=True),
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
    *basket_columns(),
    Column("action", Text, nullable=False),  # validated | unvalidated
    Column("by", Uuid, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    *money_columns("difference"),
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
    *group_member_columns(),
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
    Column("bank_line_id", Uuid),  # the bank statement line that settled it (bank_lines)
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
Index(
    "payments_one_reversal",
    payments.c.reverses_payment_id,
    unique=True,
    postgresql_where=payments.c.reverses_payment_id.isnot(None),
)

# Every state change of every payment: who, when, from, to, amounts and methods (B3).
payment_transitions = Table(
    "payment_transitions",
    metadata,
    *state_change_columns("payments"),
    Column("amount_before", BigInteger),
    Column("amount_after", BigInteger, nullable=False),
    Column("method_before", Text),
    Column("method_after", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("by", Uuid),  # null: from an event
    Column("at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=False, server_default=""),
)


# -- online card payments (issue 6) ----------------------------------------------------------

# A group's card set-up: the provider account its card payments go to. The platform's keys come
# from the environment; a group names only its connected account (no secret is stored here).
card_settings = Table(
    "card_settings",
    metadata,
    Column("group_id", Uuid, primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("stripe_account", Text),  # "acct_..." connected account; null: the platform's own account
    Column("updated_by", Uuid, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The readiness last announced in payments.card_settings.changed (null: never announced).
    Column("announced_ready", Boolean),
    Column("announced_connected", Boolean),
    # The connected account's problem last announced (CardAccountProblem; null: none): the
    # coordinators are told once when card payments stop because of it, once when it is gone.
    Column("announced_account_problem", Text),
    # The connected account as the provider last described it (account.updated, or read when it
    # was set): usable for payments only with charges enabled, card_payments active and the
    # platform still authorized.
    Column("account_charges_enabled", Boolean),
    Column("account_card_payments", Text),
    Column("account_checked_at", DateTime(timezone=True)),
    Column("account_deauthorized_at", DateTime(timezone=True)),
    Index(
        "card_settings_one_group_per_account",
        "stripe_account",
        unique=True,
        postgresql_where=text("stripe_account IS NOT NULL"),
    ),
)

# What orders asked to be paid by card (OrderAwaitingPayment): an order, or an amendment's added
# lines. The amount charged comes from here, never from the client.
card_dues = Table(
    "card_dues",
    metadata,
    Column("due_id", Uuid, primary_key=True),  # amendment_id, or order_id for the order itself
    Column("kind", Text, nullable=False),  # order | amendment
    *card_due_columns(),
    Column("lines", JSONB, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("kind IN ('order', 'amendment')", name="card_dues_kind"),
    CheckConstraint("amount > 0", name="card_dues_positive"),
)
Index("card_dues_order", card_dues.c.group_id, card_dues.c.order_id)

# One card payment attempt (one checkout session). Its id is the payment id of every event it
# causes; once succeeded, a `payments` row with the same id holds the money received.
card_payments = Table(
    "card_payments",
    metadata,
    Column("payment_id", Uuid, primary_key=True),
    Column("due_id", Uuid, ForeignKey("card_dues.due_id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    *card_due_columns(),
    Column("state", Text, nullable=False),
    Column("stripe_account", Text),
    Column("checkout_session_id", Text, unique=True),
    Column("checkout_url", Text),
    Column("expires_at", DateTime(timezone=True), nullable=False),  # the checkout session's end
    Column("payment_intent_id", Text, unique=True),
    Column("charge_id", Text),
    Column("amount_refunded", BigInteger, nullable=False, server_default=text("0")),  # recorded so far
    Column("fee_amount", BigInteger),
    Column("fee_currency", String(3)),
    Column("dispute_id", Text),
    Column("dispute_reason", Text),
    Column("dispute_status", Text),
    Column("disputed_at", DateTime(timezone=True)),
    Column("failure_reason", Text),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The provider time of the last refund failure applied: a charge.refunded older than it
    # reports a total that still counted the failed refund.
    Column("refund_failed_after", BigInteger),
    CheckConstraint(
        "state IN ('initiated', 'failed', 'expired', 'succeeded', 'partially_refunded', 'refunded', 'disputed')",
        name="card_payments_state",
    ),
    CheckConstraint("amount > 0 AND amount_refunded >= 0 AND amount_refunded <= amount", name="card_payments_amounts"),
    UniqueConstraint("due_id", "attempt", name="card_payments_attempt"),
)
Index("card_payments_charge", card_payments.c.charge_id)

# Every state change of a card payment, with the provider event that caused it (B3).
card_payment_history = Table(
    "card_payment_history",
    metadata,
    *state_change_columns("card_payments"),
    Column("provider_event_id", Text),
    Column("note", Text, nullable=False, server_default=""),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Each provider webhook event, stored once by its id (a replay finds it and does nothing).
# outcome: applied | ignored | parked (kept for an operator: unknown payment, mismatch).
provider_events = Table(
    "provider_events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("provider", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("account", Text),
    Column("livemode", Boolean, nullable=False, server_default=text("false")),
    Column("provider_created", BigInteger),
    Column("payload", JSONB, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Column("payment_id", Uuid),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    CheckConstraint("outcome IN ('applied', 'ignored', 'parked')", name="provider_events_outcome"),
)
Index("provider_events_parked", provider_events.c.received_at, postgresql_where=provider_events.c.outcome == "parked")

# Refunds asked of the provider by a coordinator. The ledger effect waits for the provider's
# charge.refunded notification; this row is the request (and its idempotency key).
card_refund_requests = Table(
    "card_refund_requests",
    metadata,
    Column("request_id", Uuid, primary_key=True),
    Column("payment_id", Uuid, ForeignKey("card_payments.payment_id"), nullable=False),
    Column("group_id", Uuid, nullable=False),
    *money_columns(),
    Column("reason", Text, nullable=False),
    Column("client_key", Text),
    Column("request_hash", Text, nullable=False),
    Column("provider_refund_id", Text),
    Column("provider_status", Text),
    Column("requested_by", Uuid, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("amount > 0", name="card_refund_requests_positive"),
    UniqueConstraint("payment_id", "client_key", name="card_refund_requests_client_key"),
)

# Money a dispute moved, one row per provider balance transaction (withdrawn: amount < 0 and
# the dispute fee; reinstated: amount > 0): each posted once.
card_dispute_funds = Table(
    "card_dispute_funds",
    metadata,
    Column("transaction_id", Text, primary_key=True),
    Column("payment_id", Uuid, ForeignKey("card_payments.payment_id"), nullable=False, index=True),
    Column("dispute_id", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("fee", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("provider_event_id", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

# Refunds that failed or were canceled after they were recorded: the money is given back once.
card_failed_refunds = Table(
    "card_failed_refunds",
    metadata,
    Column("refund_id", Text, primary_key=True),
    Column("payment_id", Uuid, ForeignKey("card_payments.payment_id"), nullable=False, index=True),
    *money_columns(),
    Column("status", Text, nullable=False),
    Column("provider_event_id", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("amount > 0", name="card_failed_refunds_positive"),
)

# Background work that talks to the provider outside a webhook request (the fee of a payment).
card_jobs = Table(
    "card_jobs",
    metadata,
    Column("payment_id", Uuid, ForeignKey("card_payments.payment_id"), primary_key=True),
    Column("kind", Text, primary_key=True),  # fee
    *retry_columns(),
    Column("done_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("correlation_id", Text),  # the cause's, kept by what the job publishes
)
Index("card_jobs_due", card_jobs.c.next_attempt_at, postgresql_where=card_jobs.c.done_at.is_(None))


# -- bank statements (issue 19) --------------------------------------------------------------

# A group's saved CSV column mapping (how its bank writes a CSV export).
bank_settings = Table(
    "bank_settings",
    metadata,
    Column("group_id", Uuid, primary_key=True),
    Column("csv_mapping", JSONB),
    Column("updated_by", Uuid, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# One imported file: what it was and what its import did (the report).
bank_imports = Table(
    "bank_imports",
    metadata,
    Column("import_id", Uuid, primary_key=True),
    Column("group_id", Uuid, nullable=False),
    Column("format", Text, nullable=False),  # camt.053.001.08, mt940, csv...
    Column("iban", Text),
    Column("statement_id", Text),
    Column("file_sha256", Text, nullable=False),
    Column("file_name", Text),
    Column("first_booking_date", Date),
    Column("last_booking_date", Date),
    Column("report", JSONB, nullable=False),  # counts per outcome, already imported
    Column("imported_by", Uuid, nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
)
Index("bank_imports_group", bank_imports.c.group_id, bank_imports.c.imported_at)

# Each statement line once per group, under its stable key (the bank's reference, else a
# fingerprint): a re-import finds it and counts it as already imported.
bank_lines = Table(
    "bank_lines",
    metadata,
    Column("line_id", Uuid, primary_key=True),
    Column("group_id", Uuid, nullable=False),
    Column("line_key", Text, nullable=False),
    Column("import_id", Uuid, ForeignKey("bank_imports.import_id"), nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("booking_date", Date, nullable=False),
    Column("value_date", Date),
    # The amount is signed: credits positive.
    *money_columns(),
    Column("counterparty", Text, nullable=False, server_default=""),
    Column("counterparty_iban", Text),
    Column("label", Text, nullable=False, server_default=""),
    Column("creditor_reference", Text),
    Column("bank_reference", Text),
    Column("reference", Text),  # the compact RF reference it matched (or the typo'd one)
    Column("outcome", Text, nullable=False),
    Column("review_reason", Text),
    Column("suggested_payment_id", Uuid),
    Column("payment_id", Uuid, ForeignKey("payments.payment_id")),
    Column("member_id", Uuid),
    Column("reviewed_by", Uuid),
    Column("reviewed_at", DateTime(timezone=True)),
    Column("review_note", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(
        "outcome IN ('matched', 'amount_corrected', 'top_up', 'to_review', 'assigned', 'ignored', 'debit')",
        name="bank_lines_outcome",
    ),
    CheckConstraint("amount <> 0", name="bank_lines_not_zero"),
    UniqueConstraint("group_id", "line_key", name="bank_lines_key"),
)
Index("bank_lines_review", bank_lines.c.group_id, bank_lines.c.outcome, bank_lines.c.booking_date)
Index("bank_lines_import", bank_lines.c.import_id)

# Each member's standing RF reference, for money-pot top-ups by transfer at any time.
member_references = Table(
    "member_references",
    metadata,
    *group_member_columns(primary_key=True),
    Column("reference", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("reference", name="member_references_reference"),
)
