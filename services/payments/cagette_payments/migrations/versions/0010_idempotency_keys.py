"""The answers kept for Idempotency-Key headers (runtime/idempotency.py, runtime/tables.py:
idempotency_keys_table), deleted after CAGETTE_IDEMPOTENCY_RETENTION_HOURS.

Revision ID: 0010_idempotency_keys
Revises: 0009_undelivered_owed
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010_idempotency_keys"
down_revision = "0009_undelivered_owed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Uuid(), nullable=False),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("state IN ('started', 'committed', 'done')", name="idempotency_keys_state"),
        sa.PrimaryKeyConstraint("principal", "method", "path", "key"),
    )
    op.create_index("idempotency_keys_created", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("idempotency_keys_created", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
