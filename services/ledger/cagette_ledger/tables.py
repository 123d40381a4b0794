"""Ledger tables. Append-only and balance rules are also enforced by the database itself
(see the first migration): postings and transactions cannot be updated or deleted, and a
transaction whose postings do not sum to zero cannot commit."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)

from cagette_runtime.columns import group_member_columns, money_columns
from cagette_runtime.memberships import memberships_table
from cagette_runtime.tables import idempotency_keys_table

from .domain import EntryStatus, HoldStatus, sql_in

metadata = MetaData()

# Answers kept for Idempotency-Key headers (runtime/idempotency.py).
idempotency_keys = idempotency_keys_table(metadata)

# Who holds which role in which group now, from orders.member.* (runtime.memberships).
memberships = memberships_table(metadata)

groups = Table(
    "groups",
    metadata,
    Column("group_id", Uuid, primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("payments_enabled", Boolean, nullable=False),
    Column("allow_negative_money_pot", Boolean, nullable=False),
    Column("settings_occurred_at", DateTime(timezone=True), nullable=False),
    Column("language", Text, nullable=False, server_default="fr"),  # added by 0003: statements' words
    # The group's IANA time zone (added by 0005): the day of a distribution in the statements' words.
    Column("time_zone", Text, nullable=False, server_default="Europe/Paris"),
)

# Who the members are, from orders.member.* (full state, the newest wins): names in the
# coordinators' lists and exports (added by 0003).
members = Table(
    "members",
    metadata,
    *group_member_columns(primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", Uuid, primary_key=True),
    Column("group_id", Uuid, nullable=False),
    Column("type", Text, nullable=False),
    Column("member_id", Uuid),
    Column("currency", String(3), nullable=False),
    Column("balance", BigInteger, nullable=False, server_default="0"),
    # How many postings the account has had: the sequence of its latest posting.
    Column("last_sequence", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint(
        "group_id", "type", "member_id", postgresql_nulls_not_distinct=True, name="accounts_one_per_owner"
    ),
    CheckConstraint("(type = 'member') = (member_id IS NOT NULL)", name="accounts_member_id_iff_member"),
    CheckConstraint(
        "type IN ('member', 'sales', 'cheques', 'cash', 'transfers', 'card_clearing', 'card_fees',"
        " 'opening_balance_equity')",
        name="accounts_known_type",
    ),
    # The member balances list, one keyset page at a time (added by 0006).
    Index("accounts_group_balances", "group_id", "type", "balance", "member_id"),
)

transactions = Table(
    "transactions",
    metadata,
    Column("transaction_id", Uuid, primary_key=True),
    Column("group_id", Uuid, nullable=False),
    Column("kind", Text, nullable=False),
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("fingerprint", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("memo", Text, nullable=False, server_default=""),
    Column("reason", Text),
    Column("recorded_by", Uuid),
    # A transaction is reversed at most once (NULLs are distinct in a unique constraint).
    Column("reverses_transaction_id", Uuid, ForeignKey("transactions.transaction_id"), unique=True),
    Column("source_event_id", Uuid),
    Column("correlation_id", Text),
    # clock_timestamp(): taken when the row is written (after the accounts were locked), so the
    # times of one account's postings follow their order even under contention.
    Column("posted_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
    Index("transactions_group_posted", "group_id", "posted_at"),
)

postings = Table(
    "postings",
    metadata,
    Column("posting_id", BigInteger, Identity(always=True), primary_key=True),
    Column("transaction_id", Uuid, ForeignKey("transactions.transaction_id"), nullable=False, index=True),
    Column("account_id", Uuid, ForeignKey("accounts.account_id"), nullable=False),
    *money_columns(),
    Column("balance_after", BigInteger, nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
    # 1, 2, 3... per account, no gap (in the ledger's events); NULL for postings written before.
    Column("sequence", BigInteger),
    CheckConstraint("amount <> 0", name="postings_amount_not_zero"),
    UniqueConstraint("account_id", "sequence", name="postings_one_per_account_sequence"),
    Index("postings_account_history", "account_id", "posting_id"),
)

# Declared payments (R16): in the member's history as pending, never in the balance. A row
# moves once from pending to posted (the PaymentReceived transaction) or voided (cancelled);
# the database refuses any other change (see the migration).
pending_entries = Table(
    "pending_entries",
    metadata,
    Column("payment_id", Uuid, primary_key=True),
    *group_member_columns(),
    Column("account_id", Uuid, ForeignKey("accounts.account_id"), nullable=False),
    *money_columns(),
    Column("method", Text, nullable=False),
    Column("reference", Text),
    Column("order_id", Uuid),
    Column("status", Text, nullable=False),
    Column("declared_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("resolved_at", DateTime(timezone=True)),
    Column("transaction_id", Uuid, ForeignKey("transactions.transaction_id")),
    Column("resolution", Text),
    CheckConstraint("amount > 0", name="pending_entries_amount_positive"),
    CheckConstraint(f"status IN ({sql_in(EntryStatus)})", name="pending_entries_known_status"),
    CheckConstraint(
        f"(status = '{EntryStatus.POSTED}') = (transaction_id IS NOT NULL)",
        name="pending_entries_posted_has_transaction",
    ),
    Index("pending_entries_open", "account_id", postgresql_where=text(f"status = '{EntryStatus.PENDING}'")),
    # A statement joins each posting's transaction to the payment it settled (added by 0006).
    Index("pending_entries_transaction", "transaction_id"),
    # The balances page's pending total for the group (added by 0006).
    Index("pending_entries_group_open", "group_id", postgresql_where=text(f"status = '{EntryStatus.PENDING}'")),
)

# Money-pot holds (R13, B2). `granted` and the decision never change: the same hold_id asked
# again gets the stored decision. A granted hold is active until captured (its order was
# confirmed), released, or expired; an active hold past expires_at never counts.
holds = Table(
    "holds",
    metadata,
    Column("hold_id", Uuid, primary_key=True),
    *group_member_columns(),
    Column("order_id", Uuid, nullable=False),
    Column("account_id", Uuid, ForeignKey("accounts.account_id")),
    *money_columns(),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("granted", Boolean, nullable=False),
    Column("available_after", BigInteger, nullable=False),
    Column("reason", Text),
    Column("status", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("resolved_at", DateTime(timezone=True)),
    Column("transaction_id", Uuid, ForeignKey("transactions.transaction_id")),
    CheckConstraint("amount > 0", name="holds_amount_positive"),
    CheckConstraint(f"status IN ({sql_in(HoldStatus)})", name="holds_known_status"),
    CheckConstraint(f"granted = (status <> '{HoldStatus.REFUSED}')", name="holds_refused_iff_not_granted"),
    Index(
        "holds_active_per_account",
        "account_id",
        "expires_at",
        postgresql_where=text(f"status = '{HoldStatus.ACTIVE}'"),
    ),
    Index("holds_by_order", "order_id"),
)
