"""Each group's own time zone (an IANA name) for the dates its pages and emails show; the
groups that exist are in French time, as every group was until now.

Revision ID: 0004_group_time_zone
Revises: 0003_member_left
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_group_time_zone"
down_revision = "0003_member_left"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("groups", sa.Column("time_zone", sa.Text(), nullable=False, server_default="Europe/Paris"))


def downgrade() -> None:
    op.drop_column("groups", "time_zone")
