"""Accounts, transactions, postings, pending entries, holds, with the database's own double-entry and
append-only rules; outbox and inbox.

The initial schema, frozen: explicit operations, never built from the current table
definitions, so a later change of tables.py is a new migration (tests/test_migrations.py fails
until it exists).

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("(type = 'member') = (member_id IS NOT NULL)", name="accounts_member_id_iff_member"),
        sa.CheckConstraint(
            "type IN ('member', 'sales', 'cheques', 'cash', 'transfers', 'card_clearing', 'card_fees', 'opening_balance_equity')",
            name="accounts_known_type",
        ),
        sa.PrimaryKeyConstraint("account_id"),
        sa.UniqueConstraint(
            "group_id", "type", "member_id", name="accounts_one_per_owner", postgresql_nulls_not_distinct=True
        ),
    )
    op.create_table(
        "groups",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payments_enabled", sa.Boolean(), nullable=False),
        sa.Column("allow_negative_money_pot", sa.Boolean(), nullable=False),
        sa.Column("settings_occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id"),
    )
    op.create_table(
        "inbox_messages",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("routing_key", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("correlation_id", sa.Text(), nullable=False),
        sa.Column(
            "headers", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(
        "outbox_messages_unpublished",
        "outbox_messages",
        ["next_attempt_at", "id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "transactions",
        sa.Column("transaction_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("memo", sa.Text(), server_default="", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.Column("reverses_transaction_id", sa.Uuid(), nullable=True),
        sa.Column("source_event_id", sa.Uuid(), nullable=True),
        sa.Column("correlation_id", sa.Text(), nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["reverses_transaction_id"],
            ["transactions.transaction_id"],
        ),
        sa.PrimaryKeyConstraint("transaction_id"),
        sa.UniqueConstraint("idempotency_key"),
        sa.UniqueConstraint("reverses_transaction_id"),
    )
    op.create_index("transactions_group_posted", "transactions", ["group_id", "posted_at"], unique=False)
    op.create_table(
        "holds",
        sa.Column("hold_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("available_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.CheckConstraint("granted = (status <> 'refused')", name="holds_refused_iff_not_granted"),
        sa.CheckConstraint(
            "status IN ('active', 'refused', 'captured', 'released', 'expired')", name="holds_known_status"
        ),
        sa.CheckConstraint("amount > 0", name="holds_amount_positive"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.transaction_id"],
        ),
        sa.PrimaryKeyConstraint("hold_id"),
    )
    op.create_index(
        "holds_active_per_account",
        "holds",
        ["account_id", "expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index("holds_by_order", "holds", ["order_id"], unique=False)
    op.create_table(
        "pending_entries",
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("declared_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(status = 'posted') = (transaction_id IS NOT NULL)", name="pending_entries_posted_has_transaction"
        ),
        sa.CheckConstraint("status IN ('pending', 'posted', 'voided')", name="pending_entries_known_status"),
        sa.CheckConstraint("amount > 0", name="pending_entries_amount_positive"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.transaction_id"],
        ),
        sa.PrimaryKeyConstraint("payment_id"),
    )
    op.create_index(
        "pending_entries_open",
        "pending_entries",
        ["account_id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "postings",
        sa.Column("posting_id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False),
        sa.CheckConstraint("amount <> 0", name="postings_amount_not_zero"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.transaction_id"],
        ),
        sa.PrimaryKeyConstraint("posting_id"),
    )
    op.create_index(op.f("ix_postings_transaction_id"), "postings", ["transaction_id"], unique=False)
    op.create_index("postings_account_history", "postings", ["account_id", "posting_id"], unique=False)
    # The database enforces what the ledger promises, whatever the client.
    for statement in (*APPEND_ONLY, *BALANCED, *STATE_MACHINES):
        op.execute(statement)


def downgrade() -> None:
    op.drop_index("postings_account_history", table_name="postings")
    op.drop_index(op.f("ix_postings_transaction_id"), table_name="postings")
    op.drop_table("postings")
    op.drop_index("pending_entries_open", table_name="pending_entries", postgresql_where=sa.text("status = 'pending'"))
    op.drop_table("pending_entries")
    op.drop_index("holds_by_order", table_name="holds")
    op.drop_index("holds_active_per_account", table_name="holds", postgresql_where=sa.text("status = 'active'"))
    op.drop_table("holds")
    op.drop_index("transactions_group_posted", table_name="transactions")
    op.drop_table("transactions")
    op.drop_index(
        "outbox_messages_unpublished", table_name="outbox_messages", postgresql_where=sa.text("published_at IS NULL")
    )
    op.drop_table("outbox_messages")
    op.drop_table("inbox_messages")
    op.drop_table("groups")
    op.drop_table("accounts")
    # The tables' triggers went with them; now their functions can go.
    op.execute(
        "DROP FUNCTION ledger_refuse_change, ledger_check_transaction_balanced, ledger_check_postings_statement, "
        "ledger_transaction_breaches, ledger_pending_entry_transition, ledger_hold_transition"
    )


# Append-only (SPEC B4): corrections are reversing transactions, never edits.
APPEND_ONLY = [
    """
        CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'ledger % are append-only: % refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'restrict_violation';
        END $$
        """,
    """
        CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON transactions
          FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()
        """,
    """
        CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON postings
          FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()
        """,
]

# Double entry, enforced by the database in two parts (cheap enough for batches of thousands):
# * each INSERT statement on postings (statement trigger, transition table) must leave every
#   transaction it touches with >= 2 postings summing to zero, all in the transaction's
#   currency and on accounts of its group and currency: a transaction's postings are written
#   by one statement;
# * at commit, each new transaction must have such postings (deferred constraint trigger), so
#   a transaction without postings cannot commit either.
BALANCED = [
    """
        CREATE FUNCTION ledger_transaction_breaches(ids uuid[]) RETURNS text LANGUAGE sql STABLE AS $$
          SELECT string_agg(format('%s (%s postings, sum %s, %s foreign)', x.transaction_id, x.n, x.total, x.wrong), '; ')
            FROM (
              SELECT t.transaction_id, count(p.posting_id) AS n, coalesce(sum(p.amount), 0) AS total,
                     count(*) FILTER (WHERE p.currency <> t.currency OR a.currency <> t.currency
                                            OR a.group_id <> t.group_id) AS wrong
                FROM transactions t
                LEFT JOIN postings p ON p.transaction_id = t.transaction_id
                LEFT JOIN accounts a ON a.account_id = p.account_id
               WHERE t.transaction_id = ANY(ids)
               GROUP BY t.transaction_id
            ) x
           WHERE x.n < 2 OR x.total <> 0 OR x.wrong > 0
        $$
        """,
    """
        CREATE FUNCTION ledger_check_postings_statement() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          breaches text;
        BEGIN
          SELECT ledger_transaction_breaches(array_agg(DISTINCT transaction_id)) INTO breaches FROM new_postings;
          IF breaches IS NOT NULL THEN
            RAISE EXCEPTION 'ledger transaction not balanced: %', breaches USING ERRCODE = 'check_violation';
          END IF;
          RETURN NULL;
        END $$
        """,
    """
        CREATE TRIGGER postings_balanced AFTER INSERT ON postings
          REFERENCING NEW TABLE AS new_postings
          FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_postings_statement()
        """,
    """
        CREATE FUNCTION ledger_check_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          -- Any postings it has were checked balanced by the statement that wrote them.
          IF NOT EXISTS (SELECT 1 FROM postings WHERE transaction_id = NEW.transaction_id) THEN
            RAISE EXCEPTION 'ledger transaction % is not balanced: it has no postings', NEW.transaction_id
              USING ERRCODE = 'check_violation';
          END IF;
          RETURN NULL;
        END $$
        """,
    """
        CREATE CONSTRAINT TRIGGER transactions_have_postings AFTER INSERT ON transactions
          DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
          EXECUTE FUNCTION ledger_check_transaction_balanced()
        """,
]

# Pending entries and holds change state once, from pending / active, and are never deleted;
# what was declared or decided (amounts, accounts, decision) never changes.
STATE_MACHINES = [
    """
        CREATE FUNCTION ledger_pending_entry_transition() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF OLD.status <> 'pending' OR NEW.status NOT IN ('posted', 'voided')
             OR NEW.payment_id <> OLD.payment_id OR NEW.account_id <> OLD.account_id
             OR NEW.amount <> OLD.amount OR NEW.currency <> OLD.currency
             OR NEW.declared_at <> OLD.declared_at THEN
            RAISE EXCEPTION 'pending entry %: % -> % refused (a pending entry is posted or voided once)',
              OLD.payment_id, OLD.status, NEW.status USING ERRCODE = 'restrict_violation';
          END IF;
          RETURN NEW;
        END $$
        """,
    """
        CREATE TRIGGER pending_entries_transition BEFORE UPDATE ON pending_entries
          FOR EACH ROW EXECUTE FUNCTION ledger_pending_entry_transition()
        """,
    """
        CREATE TRIGGER pending_entries_no_delete BEFORE DELETE OR TRUNCATE ON pending_entries
          FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()
        """,
    """
        CREATE FUNCTION ledger_hold_transition() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF OLD.status <> 'active' OR NEW.status NOT IN ('captured', 'released', 'expired')
             OR NEW.hold_id <> OLD.hold_id OR NEW.amount <> OLD.amount OR NEW.granted <> OLD.granted
             OR NEW.account_id IS DISTINCT FROM OLD.account_id OR NEW.fingerprint <> OLD.fingerprint
             OR NEW.available_after <> OLD.available_after THEN
            RAISE EXCEPTION 'hold %: % -> % refused (an active hold is captured, released or expired once)',
              OLD.hold_id, OLD.status, NEW.status USING ERRCODE = 'restrict_violation';
          END IF;
          RETURN NEW;
        END $$
        """,
    """
        CREATE TRIGGER holds_transition BEFORE UPDATE ON holds
          FOR EACH ROW EXECUTE FUNCTION ledger_hold_transition()
        """,
    """
        CREATE TRIGGER holds_no_delete BEFORE DELETE OR TRUNCATE ON holds
          FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()
        """,
]
