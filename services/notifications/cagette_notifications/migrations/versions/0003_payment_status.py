"""What became of declared payments (pending ones defer balance reminders); the event that
opened a negative episode (keys its reminder).

0002 creates its tables from the current metadata, so on a new database these columns exist
already: hence IF NOT EXISTS.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE declared_payments ADD COLUMN IF NOT EXISTS status TEXT NOT NULL DEFAULT 'declared'")
    op.execute("ALTER TABLE declared_payments ADD COLUMN IF NOT EXISTS received_amount BIGINT")
    op.execute("ALTER TABLE declared_payments ADD COLUMN IF NOT EXISTS settled_at TIMESTAMP WITH TIME ZONE")
    op.execute("ALTER TABLE member_balances ADD COLUMN IF NOT EXISTS episode_event_id UUID")


def downgrade() -> None:
    op.execute("ALTER TABLE member_balances DROP COLUMN IF EXISTS episode_event_id")
    for column in ("settled_at", "received_amount", "status"):
        op.execute(f"ALTER TABLE declared_payments DROP COLUMN IF EXISTS {column}")
