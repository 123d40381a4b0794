"""The correlation id of what caused a card job (the provider's success notice), so the fee it
publishes later keeps it.

Revision ID: 0005_fee_job_correlation
Revises: 0004_memberships
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_fee_job_correlation"
down_revision = "0004_memberships"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("card_jobs", sa.Column("correlation_id", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("card_jobs", "correlation_id")
