"""Notifications tables: a local copy of who to write to, kept from the orders events."""

from sqlalchemy import Column, DateTime, MetaData, PrimaryKeyConstraint, String, Table, Text, Uuid, func

metadata = MetaData()

group_directory = Table(
    "group_directory",
    metadata,
    Column("group_id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("language", Text, nullable=False),
    Column("cheque_payee", Text),
    Column("transfer_iban", Text),
    Column("transfer_bic", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

member_directory = Table(
    "member_directory",
    metadata,
    Column("group_id", Uuid, nullable=False),
    Column("member_id", Uuid, nullable=False),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("language", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("group_id", "member_id"),
)
