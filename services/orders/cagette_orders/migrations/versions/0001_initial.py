"""Groups, members, orders; outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from alembic import op
from sqlalchemy import (
    ARRAY, BigInteger, Boolean, CheckConstraint, Column, DateTime, ForeignKey, ForeignKeyConstraint, Integer,
    MetaData, Numeric, PrimaryKeyConstraint, String, Table, Text, Uuid, func,
)

from cagette_runtime.tables import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The tables as this revision created them (frozen: later changes are later revisions).
metadata = MetaData()

groups = Table(
    "groups",
    metadata,
    Column("group_id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("language", Text, nullable=False),
    Column("payments_enabled", Boolean, nullable=False),
    Column("payment_methods", ARRAY(Text), nullable=False),
    Column("allow_negative_money_pot", Boolean, nullable=False),
    Column("cheque_payee", Text),
    Column("transfer_iban", Text),
    Column("transfer_bic", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
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
    PrimaryKeyConstraint("group_id", "member_id"),
)

orders = Table(
    "orders",
    metadata,
    Column("order_id", Uuid, primary_key=True),
    Column("group_id", Uuid, nullable=False),
    Column("member_id", Uuid, nullable=False),
    Column("distribution_id", Uuid),
    Column("payment_method", Text),
    Column("status", Text, nullable=False),
    Column("total_amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ForeignKeyConstraint(["group_id", "member_id"], ["members.group_id", "members.member_id"]),
    CheckConstraint("total_amount > 0", name="orders_total_positive"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", Uuid, ForeignKey("orders.order_id"), nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("product_id", Uuid),
    Column("product_name", Text, nullable=False),
    Column("quantity", Numeric(12, 3), nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("fee_rate", Numeric(6, 4), nullable=False),
    Column("line_total", BigInteger, nullable=False),
    PrimaryKeyConstraint("order_id", "line_number"),
)


def upgrade() -> None:
    create_messaging_tables()
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
    drop_messaging_tables()
