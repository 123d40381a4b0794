"""The group's own time zone in the directory (from orders.group.settings_changed): emails give
the group's dates in it.

Revision ID: 0007_group_time_zone
Revises: 0006_webhooks
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_group_time_zone"
down_revision = "0006_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("group_directory", sa.Column("time_zone", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("group_directory", "time_zone")
