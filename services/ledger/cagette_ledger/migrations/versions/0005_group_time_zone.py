"""The group's own time zone (from orders.group.settings_changed): the day of a distribution in
the statements' words is the group's day. The groups known so far are in French time.

Revision ID: 0005_group_time_zone
Revises: 0004_account_sequence
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_group_time_zone"
down_revision = "0004_account_sequence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("groups", sa.Column("time_zone", sa.Text(), nullable=False, server_default="Europe/Paris"))


def downgrade() -> None:
    op.drop_column("groups", "time_zone")
