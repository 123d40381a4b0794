"""Online card payments: group card settings, what orders awaits by card, card payment attempts
and their history, provider webhook events (stored once; parked ones kept), refund requests,
background provider jobs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from alembic import op

from cagette_payments.tables import NEW_IN_0003, metadata

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=NEW_IN_0003)


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=NEW_IN_0003)
