"""Posting transactions to PostgreSQL: the ledger's write path.

Within the caller's database transaction: replay check on the idempotency key, accounts
fetched (or opened) and locked in a fixed order, running balances computed, transaction,
postings and new balances written. Reading a balance never sums history.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import Row, TextClause, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    AccountType,
    BalanceBackToNonNegative,
    BalanceChanged,
    BalanceWentNegative,
    Event,
    Money,
    PostingLine,
    TransactionKind,
    TransactionPosted,
)
from cagette_runtime import outbox
from cagette_runtime.correlation import peek_correlation_id
from cagette_runtime.errors import Conflict, Invalid
from cagette_runtime.outbox import EventContext
from cagette_runtime.rows import record

from .domain import AccountRef, TransactionDraft, crossed_zero
from .tables import accounts, postings, transactions

TRANSACTION_COLUMNS = {
    "transaction_id": "uuid",
    "group_id": "uuid",
    "kind": "text",
    "idempotency_key": "text",
    "fingerprint": "text",
    "currency": "text",
    "memo": "text",
    "reverses_transaction_id": "uuid",
    "source_event_id": "uuid",
    "correlation_id": "text",
    "reason": "text",
    "recorded_by": "uuid",
}
POSTING_COLUMNS = {
    "transaction_id": "uuid",
    "account_id": "uuid",
    "amount": "int8",
    "currency": "text",
    "balance_after": "int8",
    "sequence": "int8",
}


def _insert_unnest(table: str, columns: dict[str, str]) -> TextClause:
    names = ", ".join(columns)
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in columns.items())
    return text(f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})")


INSERT_TRANSACTIONS = _insert_unnest("transactions", TRANSACTION_COLUMNS)
INSERT_POSTINGS = _insert_unnest("postings", POSTING_COLUMNS)
UPDATE_BALANCES = text(
    "UPDATE accounts SET balance = v.balance, last_sequence = v.sequence"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:balances AS int8[]), CAST(:sequences AS int8[]))"
    " AS v(account_id, balance, sequence) WHERE accounts.account_id = v.account_id"
)


OPEN_ACCOUNTS = text(
    "INSERT INTO accounts (account_id, group_id, type, member_id, currency)"
    " SELECT * FROM unnest(CAST(:account_id AS uuid[]), CAST(:group_id AS uuid[]), CAST(:type AS text[]),"
    " CAST(:member_id AS uuid[]), CAST(:currency AS text[]))"
    " ON CONFLICT ON CONSTRAINT accounts_one_per_owner DO NOTHING"
)
# Every transaction locks accounts in one global order: member accounts first, by group and
# member, then group accounts, by group and type (FOR UPDATE locks rows in ORDER BY order), so
# transactions touching the same accounts never deadlock. The join to unnest (not a subquery)
# keeps re-checks after a concurrent update exact.
LOCK_MEMBER_ACCOUNTS = text(
    "SELECT a.account_id, a.group_id, a.type, a.member_id, a.currency, a.balance, a.last_sequence FROM accounts a"
    " JOIN unnest(CAST(:groups AS uuid[]), CAST(:members AS uuid[])) AS v(group_id, member_id)"
    "   ON a.group_id = v.group_id AND a.type = 'member' AND a.member_id = v.member_id"
    " ORDER BY a.group_id, a.member_id FOR UPDATE OF a"
)
LOCK_GROUP_ACCOUNTS = text(
    "SELECT a.account_id, a.group_id, a.type, a.member_id, a.currency, a.balance, a.last_sequence FROM accounts a"
    " JOIN unnest(CAST(:groups AS uuid[]), CAST(:types AS text[])) AS v(group_id, type)"
    "   ON a.group_id = v.group_id AND a.type = v.type AND a.member_id IS NULL"
    " ORDER BY a.group_id, a.type FOR UPDATE OF a"
)


def _columns(rows: list[dict[str, object]], columns: dict[str, str]) -> dict[str, list[object]]:
    return {name: [row[name] for row in rows] for name in columns}


@dataclass(frozen=True)
class PostedLeg:
    account_id: UUID
    account: AccountRef
    amount: Money
    balance_before: Money
    balance_after: Money
    # The posting's place in its account's history: 1, 2, 3... with no gap (None for postings
    # written before sequences existed).
    sequence: int | None = None

    def line(self) -> PostingLine:
        """The posting as TransactionPosted carries it."""
        return record(PostingLine, vars(self), account_type=self.account.type, member_id=self.account.member_id)


class _LegFields(EventContext):
    """What every balance event of one leg says: whose balance, which posting moved it (typed, so
    the events built from it are checked field by field)."""

    member_id: UUID
    account_id: UUID
    transaction_id: UUID
    balance: Money
    sequence: int | None


@dataclass(frozen=True)
class PostedTransaction:
    transaction_id: UUID
    draft: TransactionDraft
    legs: tuple[PostedLeg, ...]
    replayed: bool = False

    def events(self) -> list[Event]:
        """TransactionPosted, BalanceChanged per member leg, and zero-crossing events."""
        context = outbox.event_context(self.draft.group_id)
        if self.draft.correlation_id is not None:
            context["correlation_id"] = self.draft.correlation_id
        result: list[Event] = [
            TransactionPosted(
                **context,
                transaction_id=self.transaction_id,
                kind=TransactionKind(self.draft.kind),
                idempotency_key=self.draft.idempotency_key,
                reverses_transaction_id=self.draft.reverses,
                source_event_id=self.draft.source_event_id,
                postings=[leg.line() for leg in self.legs],
            )
        ]
        for leg in self.legs:
            if leg.account.member_id is None:
                continue
            leg_context = _LegFields(
                **context,
                member_id=leg.account.member_id,
                account_id=leg.account_id,
                transaction_id=self.transaction_id,
                balance=leg.balance_after,
                sequence=leg.sequence,
            )
            result.append(BalanceChanged(**leg_context, previous_balance=leg.balance_before))
            crossing = crossed_zero(leg.balance_before, leg.balance_after)
            if crossing is not None:
                zero_event = BalanceWentNegative if crossing == "negative" else BalanceBackToNonNegative
                result.append(zero_event(**leg_context))
        return result


async def lock_accounts(
    session: AsyncSession, refs: list[AccountRef] | dict[AccountRef, str], currency: str | None = None
) -> dict[AccountRef, tuple[UUID, int]]:
    """Open missing accounts, then lock all of them in the global lock order (no deadlocks
    between transactions touching the same accounts). `refs` maps each account to its
    currency (or is a list, all in `currency`); an existing account in another currency is
    refused. Returns ref -> (account id, balance)."""
    return {ref: (row.account_id, row.balance) for ref, row in (await _lock(session, refs, currency)).items()}


async def _lock(
    session: AsyncSession, refs: list[AccountRef] | dict[AccountRef, str], currency: str | None = None
) -> dict[AccountRef, Row[Any]]:
    """lock_accounts, answering each account's row (id, balance, last sequence)."""
    wanted = refs if isinstance(refs, dict) else dict.fromkeys(refs, currency)
    unique = sorted(wanted, key=lambda ref: (str(ref.group_id), ref.type.value, str(ref.member_id)))
    await session.execute(
        OPEN_ACCOUNTS,
        {
            "account_id": [uuid.uuid4() for _ in unique],
            "group_id": [ref.group_id for ref in unique],
            "type": [ref.type.value for ref in unique],
            "member_id": [ref.member_id for ref in unique],
            "currency": [wanted[ref] for ref in unique],
        },
    )
    members = [ref for ref in unique if ref.member_id is not None]
    group_owned = [ref for ref in unique if ref.member_id is None]
    rows: list[Row[Any]] = []
    if members:
        rows += (
            await session.execute(
                LOCK_MEMBER_ACCOUNTS,
                {"groups": [ref.group_id for ref in members], "members": [ref.member_id for ref in members]},
            )
        ).all()
    if group_owned:
        rows += (
            await session.execute(
                LOCK_GROUP_ACCOUNTS,
                {"groups": [ref.group_id for ref in group_owned], "types": [ref.type.value for ref in group_owned]},
            )
        ).all()
    found: dict[AccountRef, Row[Any]] = {}
    for row in rows:
        ref = AccountRef(row.group_id, AccountType(row.type), row.member_id)
        if row.currency != wanted[ref]:
            raise Invalid(f"account {ref.type.value} of group {ref.group_id} is in {row.currency}, not {wanted[ref]}")
        found[ref] = row
    if len(found) != len(unique):  # cannot happen: opened above; a retry will tell
        raise RuntimeError(f"accounts not found after opening them: {set(unique) - found.keys()}")
    return found


async def post(session: AsyncSession, draft: TransactionDraft) -> PostedTransaction:
    """Post `draft` once. The same idempotency key with the same content returns the original;
    with different content it is refused."""
    return (await post_many(session, [draft]))[0]


async def post_many(session: AsyncSession, drafts: list[TransactionDraft]) -> list[PostedTransaction]:
    """Post many drafts, in order, with a fixed number of statements whatever their count:
    one replay lookup, one account open + lock, one insert each for transactions and postings,
    one balance update per touched account (executemany). Replays (a key already posted, before
    or earlier in this batch) return the original; a key reused with other content is refused."""
    if not drafts:
        return []
    keys = {draft.idempotency_key for draft in drafts}
    stored = {
        row.idempotency_key: row
        for row in (
            await session.execute(
                select(transactions.c.transaction_id, transactions.c.idempotency_key, transactions.c.fingerprint).where(
                    transactions.c.idempotency_key.in_(keys)
                )
            )
        ).all()
    }
    results: list[PostedTransaction | None] = [None] * len(drafts)
    fresh: dict[str, int] = {}  # key -> index of the draft that posts it in this batch
    to_post: list[int] = []
    for index, draft in enumerate(drafts):
        key = draft.idempotency_key
        original = stored.get(key)
        fingerprint = draft.fingerprint()
        if original is not None:
            if original.fingerprint != fingerprint:
                raise Conflict(
                    f"idempotency key {key!r} was already used for a different transaction",
                    transaction_id=original.transaction_id,
                )
            results[index] = await load(session, original.transaction_id, draft)
        elif key in fresh:
            if drafts[fresh[key]].fingerprint() != fingerprint:
                raise Conflict(f"idempotency key {key!r} was already used for a different transaction")
        else:
            fresh[key] = index
            to_post.append(index)

    if to_post:
        wanted: dict[AccountRef, str] = {}
        for index in to_post:
            for leg in drafts[index].legs:
                wanted[leg.account] = drafts[index].currency
        locked = await _lock(session, wanted)
        balances = {ref: row.balance for ref, row in locked.items()}
        sequences = {ref: row.last_sequence for ref, row in locked.items()}
        in_progress = peek_correlation_id()
        transaction_rows: list[dict[str, object]] = []
        posting_rows: list[dict[str, object]] = []
        for index in to_post:
            draft = drafts[index]
            currency = draft.currency
            transaction_id = uuid.uuid4()
            legs: list[PostedLeg] = []
            for leg in draft.legs:
                before = balances[leg.account]
                after = before + leg.amount.amount
                balances[leg.account] = after
                sequences[leg.account] += 1
                legs.append(
                    PostedLeg(
                        locked[leg.account].account_id,
                        leg.account,
                        leg.amount,
                        Money(amount=before, currency=currency),
                        Money(amount=after, currency=currency),
                        sequences[leg.account],
                    )
                )
            transaction_rows.append(
                {
                    "transaction_id": transaction_id,
                    "group_id": draft.group_id,
                    "kind": draft.kind,
                    "idempotency_key": draft.idempotency_key,
                    "fingerprint": draft.fingerprint(),
                    "currency": currency,
                    "memo": draft.memo,
                    "reverses_transaction_id": draft.reverses,
                    "source_event_id": draft.source_event_id,
                    "correlation_id": draft.correlation_id or in_progress,
                    "reason": draft.reason,
                    "recorded_by": draft.recorded_by,
                }
            )
            posting_rows.extend(
                {
                    "transaction_id": transaction_id,
                    "account_id": leg.account_id,
                    "amount": leg.amount.amount,
                    "currency": currency,
                    "balance_after": leg.balance_after.amount,
                    "sequence": leg.sequence,
                }
                for leg in legs
            )
            results[index] = PostedTransaction(transaction_id, draft, tuple(legs))
        # Column arrays + unnest: one statement each, whatever the batch size, and no per-row
        # SQL compilation. All of a transaction's postings are written by one statement (the
        # database checks each INSERT statement leaves its transactions balanced).
        await session.execute(INSERT_TRANSACTIONS, _columns(transaction_rows, TRANSACTION_COLUMNS))
        await session.execute(INSERT_POSTINGS, _columns(posting_rows, POSTING_COLUMNS))
        # Every locked account was posted to (its sequence moved), even when its balance did not.
        touched = list(locked)
        await session.execute(
            UPDATE_BALANCES,
            {
                "ids": [locked[ref].account_id for ref in touched],
                "balances": [balances[ref] for ref in touched],
                "sequences": [sequences[ref] for ref in touched],
            },
        )

    # In-batch replays return what the first occurrence posted.
    for index, draft in enumerate(drafts):
        if results[index] is None:
            first = results[fresh[draft.idempotency_key]]
            assert first is not None
            results[index] = PostedTransaction(first.transaction_id, draft, first.legs, replayed=True)
    return [result for result in results if result is not None]  # every index was filled above


async def load(session: AsyncSession, transaction_id: UUID, draft: TransactionDraft) -> PostedTransaction:
    """The stored transaction `transaction_id` (a replay: the original result)."""
    rows = (
        await session.execute(
            select(
                postings.c.account_id,
                postings.c.amount,
                postings.c.balance_after,
                postings.c.currency,
                postings.c.sequence,
                accounts.c.group_id,
                accounts.c.type,
                accounts.c.member_id,
            )
            .join(accounts, accounts.c.account_id == postings.c.account_id)
            .where(postings.c.transaction_id == transaction_id)
            .order_by(postings.c.posting_id)
        )
    ).all()
    legs = tuple(
        PostedLeg(
            row.account_id,
            AccountRef(row.group_id, AccountType(row.type), row.member_id),
            Money(amount=row.amount, currency=row.currency),
            Money(amount=row.balance_after - row.amount, currency=row.currency),
            Money(amount=row.balance_after, currency=row.currency),
            row.sequence,
        )
        for row in rows
    )
    return PostedTransaction(transaction_id, draft, legs, replayed=True)
