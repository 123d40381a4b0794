"""Posting transactions to PostgreSQL: the ledger's write path.

Within the caller's database transaction: replay check on the idempotency key, accounts
fetched (or opened) and locked in a fixed order, running balances computed, transaction,
postings and new balances written. Reading a balance never sums history.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import bindparam, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    AccountType,
    BalanceBackToNonNegative,
    BalanceChanged,
    BalanceWentNegative,
    Event,
    Money,
    PostingLine,
    TransactionPosted,
)
from cagette_runtime.correlation import peek_correlation_id
from cagette_runtime.errors import Conflict, Invalid

from .domain import AccountRef, TransactionDraft, crossed_zero
from .tables import accounts, postings, transactions


# 5 parameters per row, PostgreSQL allows 32767 per statement.
POSTINGS_PER_STATEMENT = 4000


@dataclass(frozen=True)
class PostedLeg:
    account_id: UUID
    account: AccountRef
    amount: Money
    balance_before: Money
    balance_after: Money


@dataclass(frozen=True)
class PostedTransaction:
    transaction_id: UUID
    draft: TransactionDraft
    legs: tuple[PostedLeg, ...]
    replayed: bool = False

    def events(self) -> list[Event]:
        """TransactionPosted, BalanceChanged per member leg, and zero-crossing events."""
        context = {"group_id": self.draft.group_id}
        if (correlation_id := peek_correlation_id()) is not None:
            context["correlation_id"] = correlation_id
        result: list[Event] = [
            TransactionPosted(
                **context,
                transaction_id=self.transaction_id,
                kind=self.draft.kind,
                idempotency_key=self.draft.idempotency_key,
                reverses_transaction_id=self.draft.reverses,
                postings=[
                    PostingLine(
                        account_id=leg.account_id,
                        account_type=leg.account.type,
                        member_id=leg.account.member_id,
                        amount=leg.amount,
                        balance_after=leg.balance_after,
                    )
                    for leg in self.legs
                ],
            )
        ]
        for leg in self.legs:
            if leg.account.member_id is None:
                continue
            member = {"member_id": leg.account.member_id, "account_id": leg.account_id, "transaction_id": self.transaction_id}
            result.append(BalanceChanged(**context, **member, previous_balance=leg.balance_before, balance=leg.balance_after))
            crossing = crossed_zero(leg.balance_before, leg.balance_after)
            if crossing == "negative":
                result.append(BalanceWentNegative(**context, **member, balance=leg.balance_after))
            elif crossing == "non_negative":
                result.append(BalanceBackToNonNegative(**context, **member, balance=leg.balance_after))
        return result


async def lock_accounts(session: AsyncSession, refs: list[AccountRef] | dict[AccountRef, str],
                        currency: str | None = None) -> dict[AccountRef, tuple[UUID, int]]:
    """Open missing accounts, then lock all of them with one statement in one fixed order (no
    deadlocks between transactions touching the same accounts). `refs` maps each account to its
    currency (or is a list, all in `currency`); an existing account in another currency is
    refused. Returns ref -> (account id, balance)."""
    wanted = refs if isinstance(refs, dict) else dict.fromkeys(refs, currency)
    unique = sorted(wanted, key=lambda ref: (str(ref.group_id), ref.type.value, str(ref.member_id)))
    await session.execute(
        pg_insert(accounts)
        .values(
            [
                {"account_id": uuid.uuid4(), "group_id": ref.group_id, "type": ref.type.value,
                 "member_id": ref.member_id, "currency": wanted[ref]}
                for ref in unique
            ]
        )
        .on_conflict_do_nothing(constraint="accounts_one_per_owner")
    )
    keys = [(ref.group_id, ref.type.value, ref.member_id) for ref in unique]
    member_keys = [key for key in keys if key[2] is not None]
    group_keys = [key[:2] for key in keys if key[2] is None]
    conditions = []
    if member_keys:
        conditions.append(tuple_(accounts.c.group_id, accounts.c.type, accounts.c.member_id).in_(member_keys))
    if group_keys:
        conditions.append(tuple_(accounts.c.group_id, accounts.c.type).in_(group_keys) & accounts.c.member_id.is_(None))

    rows = (
        await session.execute(
            select(accounts.c.account_id, accounts.c.group_id, accounts.c.type, accounts.c.member_id,
                   accounts.c.currency, accounts.c.balance)
            .where(or_(*conditions))
            .order_by(accounts.c.group_id, accounts.c.type, accounts.c.member_id)
            .with_for_update()
        )
    ).all()
    found: dict[AccountRef, tuple[UUID, int]] = {}
    for row in rows:
        ref = AccountRef(row.group_id, AccountType(row.type), row.member_id)
        if row.currency != wanted[ref]:
            raise Invalid(f"account {ref.type.value} of group {ref.group_id} is in {row.currency}, not {wanted[ref]}")
        found[ref] = (row.account_id, row.balance)
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
                select(transactions.c.transaction_id, transactions.c.idempotency_key, transactions.c.fingerprint)
                .where(transactions.c.idempotency_key.in_(keys))
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
                raise Conflict(f"idempotency key {key!r} was already used for a different transaction",
                               transaction_id=original.transaction_id)
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
        locked = await lock_accounts(session, wanted)
        balances = {ref: balance for ref, (_, balance) in locked.items()}
        correlation_id = peek_correlation_id()
        transaction_rows, posting_rows = [], []
        for index in to_post:
            draft = drafts[index]
            currency = draft.currency
            transaction_id = uuid.uuid4()
            legs: list[PostedLeg] = []
            for leg in draft.legs:
                before = balances[leg.account]
                after = before + leg.amount.amount
                balances[leg.account] = after
                legs.append(PostedLeg(locked[leg.account][0], leg.account, leg.amount,
                                      Money(amount=before, currency=currency), Money(amount=after, currency=currency)))
            transaction_rows.append({
                "transaction_id": transaction_id, "group_id": draft.group_id, "kind": draft.kind,
                "idempotency_key": draft.idempotency_key, "fingerprint": draft.fingerprint(), "currency": currency,
                "memo": draft.memo, "reverses_transaction_id": draft.reverses, "source_event_id": draft.source_event_id,
                "correlation_id": correlation_id, "reason": draft.reason, "recorded_by": draft.recorded_by,
            })
            posting_rows.extend(
                {"transaction_id": transaction_id, "account_id": leg.account_id, "amount": leg.amount.amount,
                 "currency": currency, "balance_after": leg.balance_after.amount}
                for leg in legs
            )
            results[index] = PostedTransaction(transaction_id, draft, tuple(legs))
        await session.execute(transactions.insert(), transaction_rows)
        # One multi-row statement per chunk, never splitting a transaction's postings: the
        # database checks each INSERT statement leaves its transactions balanced.
        chunk: list[dict[str, object]] = []
        for row in posting_rows:
            if len(chunk) >= POSTINGS_PER_STATEMENT and row["transaction_id"] != chunk[-1]["transaction_id"]:
                await session.execute(postings.insert().values(chunk))
                chunk = []
            chunk.append(row)
        await session.execute(postings.insert().values(chunk))
        changed = [
            {"id": locked[ref][0], "new_balance": balance}
            for ref, balance in balances.items() if balance != locked[ref][1]
        ]
        if changed:
            await session.execute(
                update(accounts).where(accounts.c.account_id == bindparam("id")).values(balance=bindparam("new_balance")),
                changed,
            )

    # In-batch replays return what the first occurrence posted.
    for index, draft in enumerate(drafts):
        if results[index] is None:
            first = results[fresh[draft.idempotency_key]]
            assert first is not None
            results[index] = PostedTransaction(first.transaction_id, draft, first.legs, replayed=True)
    return results  # type: ignore[return-value]


async def load(session: AsyncSession, transaction_id: UUID, draft: TransactionDraft) -> PostedTransaction:
    """The stored transaction `transaction_id` (a replay: the original result)."""
    rows = (
        await session.execute(
            select(postings.c.account_id, postings.c.amount, postings.c.balance_after, postings.c.currency,
                   accounts.c.group_id, accounts.c.type, accounts.c.member_id)
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
        )
        for row in rows
    )
    return PostedTransaction(transaction_id, draft, legs, replayed=True)
