"""The connected account's problem last announced in payments.card_settings.changed, so the
coordinators are told once when card payments stop because of the account, and once when it can
take them again.

Revision ID: 0008_announced_account_problem
Revises: 0007_connected_accounts
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_announced_account_problem"
down_revision = "0007_connected_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("card_settings", sa.Column("announced_account_problem", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("card_settings", "announced_account_problem")
