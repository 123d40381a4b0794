"""The patterns the notifications.webhooks queue is bound with (webhooks.sync_bindings).

Until now that queue was bound with `#` (every event, whether an endpoint wanted it or not): the
row written here lets the first sync remove that binding when no endpoint needs it.

Revision ID: 0011_webhook_bindings
Revises: 0010_idempotency_keys
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_webhook_bindings"
down_revision = "0010_idempotency_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bindings = op.create_table("webhook_bindings", sa.Column("pattern", sa.Text(), primary_key=True))
    op.bulk_insert(bindings, [{"pattern": "#"}])


def downgrade() -> None:
    op.drop_table("webhook_bindings")
