"""Emails at most once: a delivery is 'sending' while a sender holds it, and 'uncertain' when
that sender stopped mid-send (never sent again by itself).

Revision ID: 0009_email_sending
Revises: 0008_webhook_owner
Create Date: 2026-12-02
"""

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


def downgrade() -> None:
    # A row held or interrupted goes back to 'pending': the old sender retried it under a lease.
    op.execute("UPDATE email_deliveries SET status = 'pending' WHERE status IN ('sending', 'uncertain')")
    op.drop_constraint("email_deliveries_status", "email_deliveries", type_="check")
    op.create_check_constraint("email_deliveries_status", "email_deliveries", "status IN ('pending', 'sent', 'failed')")
