"""The web service's tables: accounts, sessions, single-use links, sign-in failures, machine
clients, and its copy of orders' memberships (roles read when a token is issued)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from cagette_runtime.memberships import memberships_table

metadata = MetaData()

# Who holds which role in which group now, from orders.member.* (runtime.memberships).
memberships = memberships_table(metadata)

# One account per person across groups; the id is the member id orders gave them.
accounts = Table(
    "accounts",
    metadata,
    Column("account_id", Uuid, primary_key=True),
    Column("email", Text, nullable=False),  # lower-cased
    Column("name", Text, nullable=False),
    Column("language", Text, nullable=False),
    Column("password_hash", Text),  # argon2id; NULL until they set one
    Column("platform_admin", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("accounts_email", "email", unique=True),
)

# Server-side sessions: the cookie holds a random id, the table only its hash.
sessions = Table(
    "sessions",
    metadata,
    Column("session_hash", Text, primary_key=True),
    Column("account_id", Uuid, nullable=False),
    Column("csrf_token", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("sessions_by_account", "account_id"),
)

# Invitation and password-reset links: single use, expiring; only the hash of the secret is kept.
account_links = Table(
    "account_links",
    metadata,
    Column("link_hash", Text, primary_key=True),
    Column("account_id", Uuid, nullable=False),
    Column("purpose", Text, nullable=False),  # invitation | password_reset
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Index("account_links_by_account", "account_id"),
)

# Failed sign-ins, counted per account (e-mail as typed, lower-cased) and per client address.
sign_in_failures = Table(
    "sign_in_failures",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("email", Text, nullable=False),
    Column("client_address", Text, nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("sign_in_failures_by_email", "email", "failed_at"),
    Index("sign_in_failures_by_address", "client_address", "failed_at"),
)

# Machine clients (other systems, operators' scripts): client credentials with a scope.
clients = Table(
    "clients",
    metadata,
    Column("client_id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("secret_hash", Text, nullable=False),  # argon2id
    Column("scope", JSONB, nullable=False),  # ["admin"] or ["coordinator:<group>", "member:<group>"]
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)
