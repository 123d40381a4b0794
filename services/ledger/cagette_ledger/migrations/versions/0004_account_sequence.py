"""A per-account sequence on postings (and in the ledger's events): 1, 2, 3... with no gap, so
a subscriber tells a missing event from a late one. Postings written before keep no sequence
(the table is append-only); each account's count starts after them.

Revision ID: 0004_account_sequence
Revises: 0003_words_and_names
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_account_sequence"
down_revision = "0003_words_and_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("last_sequence", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column("postings", sa.Column("sequence", sa.BigInteger(), nullable=True))
    op.create_unique_constraint("postings_one_per_account_sequence", "postings", ["account_id", "sequence"])
    op.execute(
        "UPDATE accounts SET last_sequence = counted.n FROM"
        " (SELECT account_id, count(*) AS n FROM postings GROUP BY account_id) AS counted"
        " WHERE accounts.account_id = counted.account_id"
    )


def downgrade() -> None:
    op.drop_constraint("postings_one_per_account_sequence", "postings", type_="unique")
    op.drop_column("postings", "sequence")
    op.drop_column("accounts", "last_sequence")
