"""The write path on the real database: idempotency, running balances, the database's own
guards (append-only, double entry, state machines), concurrent postings to one member."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from cagette_contracts import AccountType, Money
from cagette_ledger import operations
from cagette_ledger.audit import run_audit
from cagette_ledger.domain import Leg, TransactionDraft, group_account, member_account
from cagette_ledger.posting import post
from cagette_ledger.tables import accounts, postings
from cagette_runtime.db import Database
from cagette_runtime.errors import Conflict, Invalid

from .conftest import order_event, payment_event


def eur(cents: int) -> Money:
    return Money(amount=cents, currency="EUR")


def charge(group: uuid.UUID, member: uuid.UUID, cents: int, key: str | None = None) -> TransactionDraft:
    return TransactionDraft(
        group_id=group,
        kind="order",
        idempotency_key=key or str(uuid.uuid4()),
        legs=(
            Leg(member_account(group, member), eur(-cents)),
            Leg(group_account(group, AccountType.SALES), eur(cents)),
        ),
    )


async def balance_of(db: Database, group: uuid.UUID, member: uuid.UUID) -> int:
    async with db.sessionmaker() as session:
        return int(
            await session.scalar(
                select(accounts.c.balance).where(accounts.c.group_id == group, accounts.c.member_id == member)
            )
        )


async def test_replay_returns_original_and_reused_key_is_refused(db: Database) -> None:
    group, member = uuid.uuid4(), uuid.uuid4()
    async with db.transaction() as session:
        first = await operations.post_and_publish(session, charge(group, member, 100, key="k-" + str(group)))
    async with db.transaction() as session:
        again = await operations.post_and_publish(session, charge(group, member, 100, key="k-" + str(group)))
    assert again.replayed and again.transaction_id == first.transaction_id
    assert [leg.balance_after for leg in again.legs] == [leg.balance_after for leg in first.legs]
    with pytest.raises(Conflict, match="different transaction"):
        async with db.transaction() as session:
            await operations.post_and_publish(session, charge(group, member, 101, key="k-" + str(group)))
    assert await balance_of(db, group, member) == -100


async def test_running_balance_per_posting(db: Database) -> None:
    group, member = uuid.uuid4(), uuid.uuid4()
    for cents in (100, 250, 50):
        async with db.transaction() as session:
            await post(session, charge(group, member, cents))
    async with db.sessionmaker() as session:
        rows = (
            await session.execute(
                select(postings.c.amount, postings.c.balance_after)
                .join(accounts, accounts.c.account_id == postings.c.account_id)
                .where(accounts.c.member_id == member)
                .order_by(postings.c.posting_id)
            )
        ).all()
    assert [(r.amount, r.balance_after) for r in rows] == [(-100, -100), (-250, -350), (-50, -400)]


async def test_account_currency_is_fixed(db: Database) -> None:
    group, member = uuid.uuid4(), uuid.uuid4()
    async with db.transaction() as session:
        await post(session, charge(group, member, 100))
    chf = TransactionDraft(
        group_id=group,
        kind="order",
        idempotency_key=str(uuid.uuid4()),
        legs=(
            Leg(member_account(group, member), Money(amount=-5, currency="CHF")),
            Leg(group_account(group, AccountType.SALES), Money(amount=5, currency="CHF")),
        ),
    )
    with pytest.raises(Invalid, match="is in EUR, not CHF"):
        async with db.transaction() as session:
            await post(session, chf)
    assert await balance_of(db, group, member) == -100


async def raw(db: Database, *statements: str, **params: object) -> None:
    async with db.transaction() as session:
        for statement in statements:
            await session.execute(text(statement), params)


async def test_database_refuses_edits_deletes_and_unbalanced_transactions(db: Database) -> None:
    group, member = uuid.uuid4(), uuid.uuid4()
    async with db.transaction() as session:
        posted = await post(session, charge(group, member, 100))
    tx = posted.transaction_id
    for statement in (
        "UPDATE postings SET amount = amount * 2 WHERE transaction_id = :tx",
        "DELETE FROM postings WHERE transaction_id = :tx",
        "UPDATE transactions SET memo = 'edited' WHERE transaction_id = :tx",
        "DELETE FROM transactions WHERE transaction_id = :tx",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            await raw(db, statement, tx=tx)
    account = posted.legs[0].account_id
    new_tx = uuid.uuid4()
    with pytest.raises(DBAPIError, match="not balanced"):
        await raw(
            db,
            "INSERT INTO transactions (transaction_id, group_id, kind, idempotency_key, fingerprint, currency) "
            "VALUES (:tx, :g, 'x', :tx_text, 'f', 'EUR')",
            "INSERT INTO postings (transaction_id, account_id, amount, "
            "currency, balance_after) VALUES (:tx, :a, 5, 'EUR', 0)",
            tx=new_tx,
            tx_text=str(new_tx),
            g=group,
            a=account,
        )
    with pytest.raises(DBAPIError, match="not balanced"):  # no postings at all
        await raw(
            db,
            "INSERT INTO transactions (transaction_id, group_id, kind, idempotency_key, fingerprint, currency) "
            "VALUES (:tx, :g, 'x', :tx_text, 'f', 'EUR')",
            tx=new_tx,
            tx_text=str(new_tx),
            g=group,
        )
    async with db.sessionmaker() as session:
        assert (await run_audit(session, group)).ok


async def test_database_guards_pending_entries_and_holds(db: Database) -> None:
    group, member = uuid.uuid4(), uuid.uuid4()
    async with db.transaction() as session:
        account = await operations.open_member_account(session, group, member, "EUR")
    payment = uuid.uuid4()
    await raw(
        db,
        "INSERT INTO pending_entries (payment_id, group_id, member_id, account_id, amount, currency, method,"
        " status) VALUES (:p, :g, :m, :a, 100, 'EUR', 'cheque', 'pending')",
        p=payment,
        g=group,
        m=member,
        a=account,
    )
    await raw(db, "UPDATE pending_entries SET status = 'voided' WHERE payment_id = :p", p=payment)
    for statement in (
        "UPDATE pending_entries SET status = 'pending' WHERE payment_id = :p",
        "UPDATE pending_entries SET amount = 5 WHERE payment_id = :p",
        "DELETE FROM pending_entries WHERE payment_id = :p",
    ):
        with pytest.raises(DBAPIError, match="refused"):
            await raw(db, statement, p=payment)


async def test_concurrent_postings_to_one_member(db: Database) -> None:
    """Forty concurrent transactions on one member account: every one lands, each running
    balance is consistent and the final balance is exact (rows are locked, never lost)."""
    group, member = uuid.uuid4(), uuid.uuid4()
    amounts = [(i % 7 + 1) * 10 for i in range(40)]

    async def one(cents: int) -> None:
        async with db.transaction() as session:
            await operations.post_and_publish(session, charge(group, member, cents))

    await asyncio.gather(*(one(cents) for cents in amounts))
    assert await balance_of(db, group, member) == -sum(amounts)
    async with db.sessionmaker() as session:
        report = await run_audit(session, group)
    assert report.ok, report.lines()
    assert report.scopes[0].checks["every transaction balances"].checked == 40


async def test_competing_batches_with_mixed_events_never_deadlock(db: Database) -> None:
    """Two consumers (replicas) commit interleaved batches of orders and payments on the same
    members at the same time: both always commit, nothing is lost."""

    from cagette_contracts import GroupSettingsChanged, OrderConfirmed, PaymentMethod, PaymentReceived
    from cagette_ledger import handlers
    from cagette_runtime.inbox import claim_many

    group = uuid.uuid4()
    members = [uuid.uuid4() for _ in range(6)]
    async with db.transaction() as session:
        await handlers.POSTINGS.dispatch(
            session, GroupSettingsChanged(group_id=group, name="g", currency="EUR", payments_enabled=True)
        )

    def batch(seed: int) -> list:
        events = []
        for i in range(30):
            m = members[(i * (seed + 1)) % len(members)]
            if (i + seed) % 3:
                events.append(order_event(group, m, eur(100), product="p"))
            else:
                events.append(
                    payment_event(
                        PaymentReceived, group, m, eur(100), PaymentMethod.CASH if i % 2 else PaymentMethod.CHEQUE
                    )
                )
        return events

    async def consume(events: list) -> None:
        async with db.transaction() as session:
            await handlers.dispatch_batch(session, await claim_many(session, "test-replicas", events))

    batches = [batch(seed) for seed in range(12)]
    for first, second in zip(batches[::2], batches[1::2], strict=True):
        await asyncio.gather(consume(first), consume(second))
    async with db.sessionmaker() as session:
        report = await run_audit(session, group)
        total = await session.scalar(
            select(func.sum(accounts.c.balance)).where(accounts.c.group_id == group, accounts.c.member_id.is_not(None))
        )
    assert report.ok
    expected = sum(-100 if isinstance(e, OrderConfirmed) else 100 for b in batches for e in b)
    assert total == expected


async def test_a_batch_posts_each_transaction_with_its_own_causes_correlation_id(db: Database) -> None:
    """Members' events committed in one batch: each transaction row and each event it publishes
    carries the correlation id of the event that caused it, not the batch's first."""

    from cagette_contracts import GroupSettingsChanged, OrderConfirmed, PaymentMethod, PaymentReceived
    from cagette_ledger import handlers
    from cagette_ledger.tables import transactions
    from cagette_runtime.inbox import claim_many
    from cagette_runtime.tables import outbox_messages

    group = uuid.uuid4()
    members = [uuid.uuid4() for _ in range(4)]
    settings = GroupSettingsChanged(group_id=group, name="g", currency="EUR", payments_enabled=True)
    events = [settings] + [
        order_event(group, member, eur(300), product="p", correlation_id=f"order-{n}")
        for n, member in enumerate(members)
    ]
    events += [
        payment_event(PaymentReceived, group, member, eur(300), PaymentMethod.CASH, correlation_id=f"payment-{n}")
        for n, member in enumerate(members)
    ]
    async with db.transaction() as session:
        await handlers.dispatch_batch(session, await claim_many(session, "test-correlation", events))
    async with db.sessionmaker() as session:
        rows = (
            await session.execute(
                select(transactions.c.idempotency_key, transactions.c.correlation_id).where(
                    transactions.c.group_id == group
                )
            )
        ).all()
        published = (
            await session.execute(
                select(outbox_messages.c.body, outbox_messages.c.correlation_id).where(
                    outbox_messages.c.body.contains(str(group))
                )
            )
        ).all()
    causes = {f"order:{e.order_id}:confirmed": e.correlation_id for e in events if isinstance(e, OrderConfirmed)}
    causes |= {f"payment:{e.payment_id}:received": e.correlation_id for e in events if isinstance(e, PaymentReceived)}
    assert {row.idempotency_key: row.correlation_id for row in rows} == causes
    by_member = {str(e.member_id): n for n, e in enumerate(events[1 : 1 + len(members)])}
    assert len(published) >= 4 * len(members)
    for row in published:
        import json

        body = json.loads(row.body)
        assert body["correlation_id"] == row.correlation_id
        member = body.get("member_id") or next(p["member_id"] for p in body["postings"] if p["member_id"])
        assert row.correlation_id in {f"order-{by_member[member]}", f"payment-{by_member[member]}"}


async def test_each_account_numbers_its_postings_without_gaps(db: Database) -> None:
    """Posted one by one and in batches, concurrently: every account's postings (and the events
    that tell them) are numbered 1, 2, 3... with no gap and no repeat."""
    import json

    from cagette_runtime.tables import outbox_messages

    group = uuid.uuid4()
    members = [uuid.uuid4() for _ in range(3)]

    async def one(member: uuid.UUID) -> None:
        async with db.transaction() as session:
            await operations.post_and_publish(session, charge(group, member, 100))

    async def batch() -> None:
        async with db.transaction() as session:
            drafts = [charge(group, member, 50) for member in members for _ in range(2)]
            await operations.post_many_and_publish(session, drafts, [None] * len(drafts))

    await asyncio.gather(*(one(m) for m in members), batch(), *(one(m) for m in members), batch())
    async with db.sessionmaker() as session:
        numbered = (
            await session.execute(
                select(postings.c.account_id, postings.c.sequence, accounts.c.last_sequence)
                .join(accounts, accounts.c.account_id == postings.c.account_id)
                .where(accounts.c.group_id == group)
            )
        ).all()
        bodies = [
            json.loads(body)
            for body in (
                await session.scalars(select(outbox_messages.c.body).where(outbox_messages.c.body.contains(str(group))))
            ).all()
        ]
    per_account: dict[uuid.UUID, list[int]] = {}
    for row in numbered:
        per_account.setdefault(row.account_id, []).append(row.sequence)
        assert row.last_sequence == len([r for r in numbered if r.account_id == row.account_id])
    for sequences in per_account.values():
        assert sorted(sequences) == list(range(1, len(sequences) + 1))
    assert sorted(len(numbers) for numbers in per_account.values()) == [6, 6, 6, 18]  # members, then sales
    changed: dict[str, list[int]] = {}
    for body in bodies:
        if body["event_type"] == "ledger.balance.changed":
            changed.setdefault(body["account_id"], []).append(body["sequence"])
        if body["event_type"] == "ledger.transaction.posted":
            for line in body["postings"]:
                assert line["sequence"] in per_account[uuid.UUID(line["account_id"])]
    assert {account: sorted(numbers) for account, numbers in changed.items()} == {
        str(account): sorted(numbers) for account, numbers in per_account.items() if len(numbers) == 6
    }
