"""Emails: preferences, local copies of orders, payments and balances, the delivery log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from alembic import op

from cagette_notifications.tables import (
    declared_payments,
    email_deliveries,
    known_amendments,
    known_orders,
    known_subscriptions,
    member_balances,
    member_preferences,
)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = [
    member_preferences, known_orders, known_amendments, known_subscriptions, declared_payments, member_balances,
    email_deliveries,
]


def upgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(TABLES):
        table.drop(bind)
