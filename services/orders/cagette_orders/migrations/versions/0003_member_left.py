"""Members can leave or be removed: members.left_at (the row and its history stay), and an index
to read one person's memberships on every request (current roles).

Revision ID: 0003_member_left
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_member_left"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("members", sa.Column("left_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("members_by_member", "members", ["member_id"])


def downgrade() -> None:
    op.drop_index("members_by_member", table_name="members")
    op.drop_column("members", "left_at")
