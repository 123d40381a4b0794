"""Indexes for the lists that grow: the member balances page (keyset on balance, member) and the
statement's join from a posting's transaction to the payment it settled, and a group's open
pending entries (the balances page's pending total).

Revision ID: 0006_list_indexes
Revises: 0005_group_time_zone
Create Date: 2026-12-02
"""

from alembic import op

revision = "0006_list_indexes"
down_revision = "0005_group_time_zone"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("accounts_group_balances", "accounts", ["group_id", "type", "balance", "member_id"])
    op.create_index("pending_entries_transaction", "pending_entries", ["transaction_id"])
    op.create_index(
        "pending_entries_group_open", "pending_entries", ["group_id"], postgresql_where="status = 'pending'"
    )


def downgrade() -> None:
    op.drop_index("pending_entries_group_open", table_name="pending_entries")
    op.drop_index("pending_entries_transaction", table_name="pending_entries")
    op.drop_index("accounts_group_balances", table_name="accounts")
