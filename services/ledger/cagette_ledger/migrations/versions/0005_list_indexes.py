"""Indexes for the lists that grow: the member balances page (keyset on balance, member) and the
statement's join from a posting's transaction to the payment it settled.

Revision ID: 0005_list_indexes
Revises: 0004_account_sequence
Create Date: 2026-12-02
"""

from alembic import op

revision = "0005_list_indexes"
down_revision = "0004_account_sequence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("accounts_group_balances", "accounts", ["group_id", "type", "balance", "member_id"])
    op.create_index("pending_entries_transaction", "pending_entries", ["transaction_id"])


def downgrade() -> None:
    op.drop_index("pending_entries_transaction", table_name="pending_entries")
    op.drop_index("accounts_group_balances", table_name="accounts")
