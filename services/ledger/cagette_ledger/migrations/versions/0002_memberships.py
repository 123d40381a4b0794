"""The ledger service's copy of orders' memberships (orders.member.*), read on every request to
authorize against the roles people hold now.

Revision ID: 0002_memberships
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_memberships"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "memberships",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.Text(), nullable=True),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "member_id"),
    )
    op.create_index("memberships_by_member", "memberships", ["member_id"])


def downgrade() -> None:
    op.drop_index("memberships_by_member", table_name="memberships")
    op.drop_table("memberships")
