"""Tables the runtime keeps in every service database: the outbox and the inbox; and one a
service keeps when its API takes idempotency keys (`idempotency_keys_table`, runtime/idempotency.py).

They live in each service's own database and schema history: each service's first Alembic
migration creates them explicitly (frozen, like every migration), and the services' env.py
compares them too, so a change here shows up as a migration to write in every service.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from .columns import retry_columns

messaging_metadata = MetaData()

outbox_messages = Table(
    "outbox_messages",
    messaging_metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("routing_key", Text, nullable=False),
    Column("body", Text, nullable=False),  # the exact JSON published
    Column("correlation_id", Text, nullable=False),
    Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
    *retry_columns(),
    Column("last_error", Text),
    Index("outbox_messages_unpublished", "next_attempt_at", "id", postgresql_where=text("published_at IS NULL")),
)

inbox_messages = Table(
    "inbox_messages",
    messaging_metadata,
    Column("consumer", Text, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "event_id"),
)


def idempotency_keys_table(metadata: MetaData) -> Table:
    """The answers kept for `Idempotency-Key` headers (runtime/idempotency.py), defined once: a
    service whose API takes the keys adds it to its own metadata (and creates it by a migration)."""
    return Table(
        "idempotency_keys",
        metadata,
        # The scope: who asked (principal kind and user id), with which method on which path.
        Column("principal", Text, nullable=False),
        Column("method", Text, nullable=False),
        Column("path", Text, nullable=False),
        Column("key", Text, nullable=False),
        # sha256 of the query string and the body: the same key with another request is a 409.
        Column("fingerprint", Text, nullable=False),
        # started: the first request runs; committed: its effect is committed, its answer not yet
        # stored; done: the answer below is stored and replayed.
        Column("state", Text, nullable=False),
        # Which attempt holds a started row (a row whose lease lapsed can be taken over).
        Column("attempt", Uuid, nullable=False),
        Column("leased_until", DateTime(timezone=True), nullable=False),
        Column("status_code", Integer),
        Column("headers", JSONB),
        Column("body", LargeBinary),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("principal", "method", "path", "key"),
        CheckConstraint("state IN ('started', 'committed', 'done')", name="idempotency_keys_state"),
        Index("idempotency_keys_created", "created_at"),
    )


# The runtime's own handle on it, for its queries (each service declares it in its metadata too).
idempotency_keys = idempotency_keys_table(MetaData())
