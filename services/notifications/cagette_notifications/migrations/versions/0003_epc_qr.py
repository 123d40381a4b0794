"""The EPC QR code a delivery carries inline (transfer instructions).

Revision ID: 0003_epc_qr
Revises: 0002_balance_after
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_epc_qr"
down_revision = "0002_balance_after"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("email_deliveries", sa.Column("epc_payload", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("email_deliveries", "epc_payload")
