"""Emails at most once: a delivery is 'sending' while a sender holds it, and 'uncertain' when
that sender stopped mid-send (never sent again by itself).

Revision ID: 0009_email_sending
Revises: 0008_webhook_owner
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_email_sending"
down_revision = "0008_webhook_owner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("email_deliveries_status", "email_deliveries", type_="check")
    op.create_check_constraint(
        "email_deliveries_status",
        "email_deliveries",
        "status IN ('pending', 'sending', 'sent', 'failed', 'uncertain')",
    )
    op.create_index(
        "email_deliveries_sending",
        "email_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'sending'"),
    )


def downgrade() -> None:
    # A row held or interrupted goes back to 'pending': the old sender retried it under a lease.
    op.drop_index("email_deliveries_sending", table_name="email_deliveries")
    op.execute("UPDATE email_deliveries SET status = 'pending' WHERE status IN ('sending', 'uncertain')")
    op.drop_constraint("email_deliveries_status", "email_deliveries", type_="check")
    op.create_check_constraint("email_deliveries_status", "email_deliveries", "status IN ('pending', 'sent', 'failed')")
