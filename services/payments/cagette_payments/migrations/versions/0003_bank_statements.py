"""Bank statements: imports, their lines, saved CSV mappings, members' standing references; the
group's BIC and the bank line that settled a payment.

Revision ID: 0003_bank_statements
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_bank_statements"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("groups", sa.Column("transfer_bic", sa.Text(), nullable=True))
    op.add_column("payments", sa.Column("bank_line_id", sa.Uuid(), nullable=True))
    op.create_table(
        "bank_settings",
        sa.Column("group_id", sa.Uuid(), primary_key=True),
        sa.Column("csv_mapping", postgresql.JSONB(), nullable=True),
        sa.Column("updated_by", sa.Uuid(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "bank_imports",
        sa.Column("import_id", sa.Uuid(), primary_key=True),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("iban", sa.Text(), nullable=True),
        sa.Column("statement_id", sa.Text(), nullable=True),
        sa.Column("file_sha256", sa.Text(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=True),
        sa.Column("first_booking_date", sa.Date(), nullable=True),
        sa.Column("last_booking_date", sa.Date(), nullable=True),
        sa.Column("report", postgresql.JSONB(), nullable=False),
        sa.Column("imported_by", sa.Uuid(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("bank_imports_group", "bank_imports", ["group_id", "imported_at"])
    op.create_table(
        "bank_lines",
        sa.Column("line_id", sa.Uuid(), primary_key=True),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("line_key", sa.Text(), nullable=False),
        sa.Column("import_id", sa.Uuid(), sa.ForeignKey("bank_imports.import_id"), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("booking_date", sa.Date(), nullable=False),
        sa.Column("value_date", sa.Date(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("counterparty", sa.Text(), nullable=False, server_default=""),
        sa.Column("counterparty_iban", sa.Text(), nullable=True),
        sa.Column("label", sa.Text(), nullable=False, server_default=""),
        sa.Column("creditor_reference", sa.Text(), nullable=True),
        sa.Column("bank_reference", sa.Text(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("review_reason", sa.Text(), nullable=True),
        sa.Column("suggested_payment_id", sa.Uuid(), nullable=True),
        sa.Column("payment_id", sa.Uuid(), sa.ForeignKey("payments.payment_id"), nullable=True),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("reviewed_by", sa.Uuid(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('matched', 'amount_corrected', 'top_up', 'to_review', 'assigned', 'ignored', 'debit')",
            name="bank_lines_outcome",
        ),
        sa.CheckConstraint("amount <> 0", name="bank_lines_not_zero"),
        sa.UniqueConstraint("group_id", "line_key", name="bank_lines_key"),
    )
    op.create_index("bank_lines_review", "bank_lines", ["group_id", "outcome", "booking_date"])
    op.create_index("bank_lines_import", "bank_lines", ["import_id"])
    op.create_table(
        "member_references",
        sa.Column("group_id", sa.Uuid(), primary_key=True),
        sa.Column("member_id", sa.Uuid(), primary_key=True),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("reference", name="member_references_reference"),
    )


def downgrade() -> None:
    op.drop_table("member_references")
    op.drop_index("bank_lines_import", table_name="bank_lines")
    op.drop_index("bank_lines_review", table_name="bank_lines")
    op.drop_table("bank_lines")
    op.drop_index("bank_imports_group", table_name="bank_imports")
    op.drop_table("bank_imports")
    op.drop_table("bank_settings")
    op.drop_column("payments", "bank_line_id")
    op.drop_column("groups", "transfer_bic")
