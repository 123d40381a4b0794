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
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
)

metadata = MetaData()

groups = Table(
    "groups",
    metadata,
    Column("group_id", Uuid, primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("payments_enabled", Boolean, nullable=False),
    Column("allow_negative_money_pot", Boolean, nullable=False),
    Column("settings_occurred_at", DateTime(timezone=True), nullable=False),
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
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("group_id", "type", "member_id", postgresql_nulls_not_distinct=True, name="accounts_one_per_owner"),
    CheckConstraint("(type = 'member') = (member_id IS NOT NULL)", name="accounts_member_id_iff_member"),
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
    Column("reverses_transaction_id", Uuid, ForeignKey("transactions.transaction_id")),
    Column("source_event_id", Uuid),
    Column("correlation_id", Text),
    Column("posted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

postings = Table(
    "postings",
    metadata,
    Column("posting_id", BigInteger, Identity(always=True), primary_key=True),
    Column("transaction_id", Uuid, ForeignKey("transactions.transaction_id"), nullable=False, index=True),
    Column("account_id", Uuid, ForeignKey("accounts.account_id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("amount <> 0", name="postings_amount_not_zero"),
)
