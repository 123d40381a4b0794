"""The owner a platform webhook endpoint was registered with, emailed when it is disabled.

Revision ID: 0007_webhook_owner
Revises: 0006_webhooks
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_webhook_owner"
down_revision = "0006_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Platform endpoints registered before keep no owner (their disabling is logged as before);
    # the API requires one of every new platform endpoint.
    op.add_column("webhook_endpoints", sa.Column("owner_email", sa.Text(), nullable=True))
    op.add_column(
        "webhook_endpoints", sa.Column("owner_language", sa.Text(), server_default=sa.text("'fr'"), nullable=False)
    )
    op.create_check_constraint(
        "webhook_endpoints_owner_language", "webhook_endpoints", "owner_language IN ('fr', 'en')"
    )


def downgrade() -> None:
    op.drop_constraint("webhook_endpoints_owner_language", "webhook_endpoints", type_="check")
    op.drop_column("webhook_endpoints", "owner_language")
    op.drop_column("webhook_endpoints", "owner_email")
