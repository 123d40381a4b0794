"""Notifications tables: a local copy of who to write to, kept from the orders events."""

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
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

from cagette_runtime.columns import group_member_columns, money_columns, payment_instruction_columns, retry_columns
from cagette_runtime.memberships import memberships_table
from cagette_runtime.tables import idempotency_keys_table

metadata = MetaData()

# Answers kept for Idempotency-Key headers (runtime/idempotency.py).
idempotency_keys = idempotency_keys_table(metadata)

# Who holds which role in which group now, from orders.member.* (runtime.memberships).
memberships = memberships_table(metadata)

group_directory = Table(
    "group_directory",
    metadata,
    Column("group_id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("language", Text, nullable=False),
    *payment_instruction_columns(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The group's IANA time zone, as orders announces it (null: from before groups had one).
    Column("time_zone", Text),
)

member_directory = Table(
    "member_directory",
    metadata,
    *group_member_columns(primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("language", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Added by 0004: 'member' or 'coordinator' (coordinators hear about card disputes). NULL only
    # for rows kept before 0004, whose role was not stored: unknown until the next MemberUpdated.
    Column("role", Text),
    CheckConstraint("role IN ('member', 'coordinator')", name="member_directory_role"),
)

# Members' choices, set through the HTTP API (kept apart from the directory, which the orders
# events overwrite). Absent row = defaults (reminders on).
member_preferences = Table(
    "member_preferences",
    metadata,
    *group_member_columns(primary_key=True),
    Column("reminders_opt_out", Boolean, nullable=False, server_default=text("false")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_by", Uuid),
)

# Orders and amendments as confirmed (their lines are shown in the instructions email).
known_orders = Table(
    "known_orders",
    metadata,
    Column("order_id", Uuid, primary_key=True),
    *group_member_columns(),
    Column("payment_method", Text, nullable=False),
    Column("lines", JSONB, nullable=False),
    *money_columns("total_amount"),
    Column("confirmed_at", DateTime(timezone=True), nullable=False),
    # added by 0005: the order email names its distribution
    Column("distribution_starts_at", DateTime(timezone=True)),
    Column("distribution_place", Text),
)

known_amendments = Table(
    "known_amendments",
    metadata,
    Column("amendment_id", Uuid, primary_key=True),
    Column("order_id", Uuid, nullable=False, index=True),
    *group_member_columns(),
    Column("payment_method", Text, nullable=False),
    Column("added_lines", JSONB, nullable=False),
    Column("added_total_amount", BigInteger, nullable=False),
    Column("new_total_amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amended_at", DateTime(timezone=True), nullable=False),
)

known_subscriptions = Table(
    "known_subscriptions",
    metadata,
    Column("subscription_id", Uuid, primary_key=True),
    *group_member_columns(),
    Column("contract_name", Text, nullable=False),
)

# Payments the payments service declared (cheque, transfer, cash, on the spot), with their RF
# reference: the instructions email of their order is sent once both the order and this are known.
declared_payments = Table(
    "declared_payments",
    metadata,
    Column("payment_id", Uuid, primary_key=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    *group_member_columns(),
    Column("order_id", Uuid, index=True),
    Column("amendment_id", Uuid, index=True),
    Column("subscription_id", Uuid),
    Column("method", Text, nullable=False),
    *money_columns(),
    Column("reference", Text),
    Column("declared_at", DateTime(timezone=True), nullable=False),
    # Added by 0003: what became of it. 'declared' (pending), 'received' or 'cancelled'. A
    # received payment not declared before (entered by a coordinator) gets a row too.
    Column("status", Text, nullable=False, server_default=text("'declared'")),
    Column("received_amount", BigInteger),
    Column("settled_at", DateTime(timezone=True)),
)

# Member balances from the ledger events, and the negative episode (reminder / digests).
member_balances = Table(
    "member_balances",
    metadata,
    *group_member_columns(primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("balance", BigInteger),
    Column("as_of", DateTime(timezone=True)),
    Column("negative_since", DateTime(timezone=True)),
    Column("episode_event_id", Uuid),  # added by 0003: the BalanceWentNegative that opened it
    Column("episode_closed_at", DateTime(timezone=True)),
    Column("last_reminder_at", DateTime(timezone=True)),
)

# B7: the balance a money-pot email states is the ledger's, right after it posted what the email
# is about. The ledger's TransactionPosted says which event it posted (source_event_id) and the
# member's balance after it; an order event that arrives first waits for it in awaiting_posting.
ledger_postings = Table(
    "ledger_postings",
    metadata,
    Column("source_event_id", Uuid, primary_key=True),
    Column("member_id", Uuid, nullable=False),
    *money_columns("balance_after"),
    Column("posted_at", DateTime(timezone=True), nullable=False),
)

awaiting_posting = Table(
    "awaiting_posting",
    metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("body", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The delivery log: one row per (event, recipient, kind), written as 'pending' in the consuming
# transaction with the rendered message; the sender task sends it after commit.
email_deliveries = Table(
    "email_deliveries",
    metadata,
    Column("delivery_id", Uuid, primary_key=True),
    Column("event_id", Uuid, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("group_id", Uuid, nullable=False),
    Column("member_id", Uuid),
    Column("language", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("text_body", Text, nullable=False),
    Column("html_body", Text, nullable=False),
    Column("epc_payload", Text),  # an EPC QR code to attach inline (transfer instructions)
    Column("message_id", Text, nullable=False),
    Column("correlation_id", Text, nullable=False),
    # pending | sending (a sender holds it) | sent | failed | uncertain (interrupted mid-send)
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    *retry_columns(),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    Column("failed_at", DateTime(timezone=True)),
    UniqueConstraint("event_id", "recipient", "kind", name="email_deliveries_once"),
    CheckConstraint("status IN ('pending', 'sending', 'sent', 'failed', 'uncertain')", name="email_deliveries_status"),
)
Index(
    "email_deliveries_due", email_deliveries.c.next_attempt_at, postgresql_where=email_deliveries.c.status == "pending"
)
# The sender looks for lapsed claims at every poll: only the few rows being sent, not the history.
Index(
    "email_deliveries_sending",
    email_deliveries.c.next_attempt_at,
    postgresql_where=email_deliveries.c.status == "sending",
)


# Outbound webhooks (webhooks.py): the registered endpoints, and the delivery log, one row per
# (endpoint, event) written as 'pending' in the consuming transaction.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("endpoint_id", Uuid, primary_key=True),
    Column("group_id", Uuid),  # NULL: every group's events (a platform administrator's endpoint)
    Column("url", Text, nullable=False),
    Column("event_types", ARRAY(Text), nullable=False),  # topic patterns
    Column("secret", Text, nullable=False),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("failing_since", DateTime(timezone=True)),  # first failure since the last success
    Column("last_success_at", DateTime(timezone=True)),
    Column("disabled_at", DateTime(timezone=True)),
    Column("disabled_reason", Text),
    # Added by 0008: who is emailed (in which language) when a platform endpoint is disabled; a
    # group's endpoint tells the group's coordinators instead. The API requires it of every new
    # platform endpoint; NULL for those registered before 0008 (their disabling is only logged).
    # No CHECK for it: PostgreSQL checks even a NOT VALID constraint on updates of old rows.
    Column("owner_email", Text),
    Column("owner_language", Text, nullable=False, server_default=text("'fr'")),
    CheckConstraint("owner_language IN ('fr', 'en')", name="webhook_endpoints_owner_language"),
)

# The topic patterns the notifications.webhooks queue is bound with (webhooks.sync_bindings):
# those of the enabled endpoints, so that an event no endpoint wants is never queued here.
webhook_bindings = Table(
    "webhook_bindings",
    metadata,
    Column("pattern", Text, primary_key=True),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("delivery_id", Uuid, primary_key=True),
    Column("endpoint_id", Uuid, ForeignKey("webhook_endpoints.endpoint_id"), nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("group_id", Uuid, nullable=False),
    Column("correlation_id", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", Text, nullable=False),  # pending | delivered | failed
    *retry_columns(),
    # Retries stop webhook_retry_for after this (the delivery's creation, or its replay).
    Column("window_started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
    UniqueConstraint("endpoint_id", "event_id", name="webhook_deliveries_once"),
    CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="webhook_deliveries_status"),
)
Index(
    "webhook_deliveries_due",
    webhook_deliveries.c.next_attempt_at,
    postgresql_where=webhook_deliveries.c.status == "pending",
)
Index("webhook_deliveries_log", webhook_deliveries.c.endpoint_id, webhook_deliveries.c.created_at)
