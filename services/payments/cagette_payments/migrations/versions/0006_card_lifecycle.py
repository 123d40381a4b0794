"""The card payment's lifecycle after the success: refund and dispute states, disputes' money
movements and failed refunds, each recorded once.

Revision ID: 0006_card_lifecycle
Revises: 0005_fee_job_correlation
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_card_lifecycle"
down_revision = "0005_fee_job_correlation"
branch_labels = None
depends_on = None

OLD_STATES = "state IN ('initiated', 'failed', 'expired', 'succeeded')"
NEW_STATES = "state IN ('initiated', 'failed', 'expired', 'succeeded', 'partially_refunded', 'refunded', 'disputed')"


def upgrade() -> None:
    op.add_column("card_payments", sa.Column("refund_failed_after", sa.BigInteger(), nullable=True))
    op.drop_constraint("card_payments_state", "card_payments", type_="check")
    op.create_check_constraint("card_payments_state", "card_payments", NEW_STATES)
    op.create_table(
        "card_dispute_funds",
        sa.Column("transaction_id", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("dispute_id", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("provider_event_id", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["payment_id"], ["card_payments.payment_id"]),
        sa.PrimaryKeyConstraint("transaction_id"),
    )
    op.create_index("ix_card_dispute_funds_payment_id", "card_dispute_funds", ["payment_id"])
    op.create_table(
        "card_failed_refunds",
        sa.Column("refund_id", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("provider_event_id", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name="card_failed_refunds_positive"),
        sa.ForeignKeyConstraint(["payment_id"], ["card_payments.payment_id"]),
        sa.PrimaryKeyConstraint("refund_id"),
    )
    op.create_index("ix_card_failed_refunds_payment_id", "card_failed_refunds", ["payment_id"])


def downgrade() -> None:
    op.drop_index("ix_card_failed_refunds_payment_id", table_name="card_failed_refunds")
    op.drop_table("card_failed_refunds")
    op.drop_index("ix_card_dispute_funds_payment_id", table_name="card_dispute_funds")
    op.drop_table("card_dispute_funds")
    op.drop_constraint("card_payments_state", "card_payments", type_="check")
    op.create_check_constraint("card_payments_state", "card_payments", OLD_STATES)
    op.drop_column("card_payments", "refund_failed_after")
