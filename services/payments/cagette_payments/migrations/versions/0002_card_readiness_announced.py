"""The card readiness last announced to the other services (payments.card_settings.changed).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("card_settings", sa.Column("announced_ready", sa.Boolean(), nullable=True))
    op.add_column("card_settings", sa.Column("announced_connected", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("card_settings", "announced_connected")
    op.drop_column("card_settings", "announced_ready")
