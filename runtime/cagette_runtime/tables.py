"""Tables the runtime keeps in every service database: the outbox and the inbox.

Each service's first Alembic migration calls `create_messaging_tables()`, so the tables live in
the service's own database and schema history.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

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
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_error", Text),
)

inbox_messages = Table(
    "inbox_messages",
    messaging_metadata,
    Column("consumer", Text, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "event_id"),
)


def create_messaging_tables() -> None:
    """Alembic operations creating the outbox and inbox (call from a migration's upgrade())."""
    from alembic import op

    bind = op.get_bind()
    messaging_metadata.create_all(bind)
    op.create_index(
        "outbox_messages_unpublished",
        "outbox_messages",
        ["next_attempt_at", "id"],
        postgresql_where=text("published_at IS NULL"),
    )


def drop_messaging_tables() -> None:
    from alembic import op

    messaging_metadata.drop_all(op.get_bind())
