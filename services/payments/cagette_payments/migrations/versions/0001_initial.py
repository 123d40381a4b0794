"""Service tables; outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from alembic import op

from cagette_runtime.tables import create_messaging_tables, drop_messaging_tables

from cagette_payments.tables import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables()
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
    drop_messaging_tables()
