"""Payments tables."""

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, Text, Uuid, func

metadata = MetaData()

# What each confirmed order asks the member to pay, from OrderConfirmed (issue 5 builds the
# per-basket view and declared payments on it).
amounts_owed = Table(
    "amounts_owed",
    metadata,
    Column("order_id", Uuid, primary_key=True),
    Column("group_id", Uuid, nullable=False),
    Column("member_id", Uuid, nullable=False),
    Column("distribution_id", Uuid),
    Column("payment_method", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
