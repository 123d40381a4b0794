"""Every money-pot hold orders asks the ledger for (hold_requests), so that a hold whose order
was never recorded is given back by the reconciliation loop instead of blocking the member's
money until it expires.

Revision ID: 0006_hold_requests
Revises: 0005_undelivered_lines
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_hold_requests"
down_revision = "0005_undelivered_lines"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hold_requests",
        sa.Column("hold_id", sa.Uuid(), nullable=False),
        sa.Column("attempt_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("grant_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('asked', 'refused', 'committed', 'released', 'expired')", name="hold_requests_known_status"
        ),
        sa.PrimaryKeyConstraint("hold_id"),
    )
    op.create_index("hold_requests_by_attempt", "hold_requests", ["attempt_id"])
    op.create_index(
        "hold_requests_open",
        "hold_requests",
        ["grant_before"],
        postgresql_where=sa.text("status = 'asked'"),
    )


def downgrade() -> None:
    op.drop_index("hold_requests_open", table_name="hold_requests")
    op.drop_index("hold_requests_by_attempt", table_name="hold_requests")
    op.drop_table("hold_requests")
