"""Statements in words and lists with names: the group's language, and the members' names and
emails as the orders service announces them.

Revision ID: 0003_words_and_names
Revises: 0002_memberships
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_words_and_names"
down_revision = "0002_memberships"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("groups", sa.Column("language", sa.Text(), server_default="fr", nullable=False))
    op.create_table(
        "members",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "member_id"),
    )


def downgrade() -> None:
    op.drop_table("members")
    op.drop_column("groups", "language")
