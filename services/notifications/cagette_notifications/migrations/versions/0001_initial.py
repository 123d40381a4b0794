"""Service tables; outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from alembic import op

from cagette_runtime.tables import create_messaging_tables, drop_messaging_tables

from cagette_notifications.tables import group_directory, member_directory

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables()
    # Only this revision's tables: later revisions create theirs.
    group_directory.create(op.get_bind())
    member_directory.create(op.get_bind())


def downgrade() -> None:
    member_directory.drop(op.get_bind())
    group_directory.drop(op.get_bind())
    drop_messaging_tables()
