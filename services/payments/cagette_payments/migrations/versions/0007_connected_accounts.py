"""Connected accounts followed from the provider: whether the group's Stripe account may take
card payments now (charges enabled, card_payments capability active, not deauthorized), and one
account for one group only.

Revision ID: 0007_connected_accounts
Revises: 0006_card_lifecycle
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_connected_accounts"
down_revision = "0006_card_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("card_settings", sa.Column("account_charges_enabled", sa.Boolean(), nullable=True))
    op.add_column("card_settings", sa.Column("account_card_payments", sa.Text(), nullable=True))
    op.add_column("card_settings", sa.Column("account_checked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("card_settings", sa.Column("account_deauthorized_at", sa.DateTime(timezone=True), nullable=True))
    # Accounts typed in before this revision were checked to exist, not to take payments: they are
    # taken as usable until the provider's next account.updated says otherwise.
    op.execute(
        "UPDATE card_settings SET account_charges_enabled = true, account_card_payments = 'active' "
        "WHERE stripe_account IS NOT NULL"
    )
    op.create_index(
        "card_settings_one_group_per_account",
        "card_settings",
        ["stripe_account"],
        unique=True,
        postgresql_where=sa.text("stripe_account IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("card_settings_one_group_per_account", table_name="card_settings")
    for column in ("account_deauthorized_at", "account_checked_at", "account_card_payments", "account_charges_enabled"):
        op.drop_column("card_settings", column)
