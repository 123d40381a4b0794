"""Ledger accounts, transactions, postings, pending entries, holds; outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from alembic import op

from cagette_runtime.tables import create_messaging_tables, drop_messaging_tables

from cagette_ledger.tables import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables()
    metadata.create_all(op.get_bind())
    op.create_index("postings_account_history", "postings", ["account_id", "posting_id"])
    for statement in APPEND_ONLY:
        op.execute(statement)
    for statement in BALANCED:
        op.execute(statement)
    for statement in STATE_MACHINES:
        op.execute(statement)


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


def downgrade() -> None:
    op.execute("DROP TABLE holds, pending_entries, postings, transactions, accounts, groups CASCADE")
    op.execute(
        "DROP FUNCTION ledger_refuse_change, ledger_check_transaction_balanced, ledger_check_postings_statement, "
        "ledger_transaction_breaches, ledger_pending_entry_transition, ledger_hold_transition"
    )
    drop_messaging_tables()
