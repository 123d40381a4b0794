"""Property-based: random sequences of postings, reversals, holds (granted, captured, released)
and idempotent replays, run through the real handlers on the real database, keep every audit
invariant and agree with a plain in-memory model of the balances."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cagette_contracts import (
    GroupSettingsChanged,
    MemberJoined,
    Money,
    OrderConfirmed,
    PaymentMethod,
    PaymentReceived,
    PaymentRefunded,
    PlaceHold,
    Role,
)
from cagette_ledger import domain, handlers, operations
from cagette_ledger.audit import run_audit
from cagette_ledger.tables import accounts
from cagette_runtime.db import Database
from cagette_runtime.errors import Conflict, Invalid

from .conftest import order_event, payment_event

MEMBERS = 3
cents = st.integers(1, 50_000)
member = st.integers(0, MEMBERS - 1)
operation = st.one_of(
    st.tuples(st.just("order"), member, cents),
    st.tuples(
        st.just("payment"),
        member,
        cents,
        st.sampled_from([PaymentMethod.CHEQUE, PaymentMethod.CASH, PaymentMethod.TRANSFER, PaymentMethod.CARD]),
    ),
    st.tuples(st.just("refund"), member, cents),
    st.tuples(st.just("correction"), member, st.integers(-20_000, 20_000).filter(bool)),
    st.tuples(st.just("reverse"), st.integers(0, 30)),
    st.tuples(st.just("replay"), st.integers(0, 30)),
    st.tuples(st.just("hold"), member, cents),
    st.tuples(st.just("capture"), st.integers(0, 30)),
    st.tuples(st.just("release"), st.integers(0, 30)),
)


def eur(amount: int) -> Money:
    return Money(amount=amount, currency="EUR")


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(operation, min_size=1, max_size=25), allow_negative=st.booleans())
async def test_random_sequences_keep_the_audit_invariants(db: Database, ops: list[tuple], allow_negative: bool) -> None:
    group = uuid.uuid4()
    members = [uuid.uuid4() for _ in range(MEMBERS)]
    expected = dict.fromkeys(members, 0)
    posted: list[tuple[uuid.UUID, dict[uuid.UUID, int]]] = []  # transaction id, member deltas
    reversed_ids: set[uuid.UUID] = set()
    replayable: list[object] = []
    grants: list[PlaceHold] = []

    async with db.transaction() as session:
        await handlers.POSTINGS.dispatch(
            session,
            GroupSettingsChanged(
                group_id=group, name="g", currency="EUR", payments_enabled=True, allow_negative_money_pot=allow_negative
            ),
        )
        for m in members:
            await handlers.POSTINGS.dispatch(
                session, MemberJoined(group_id=group, member_id=m, role=Role.MEMBER, name="m", email="m@example.org")
            )

    async def run(event) -> None:
        async with db.transaction() as session:
            await handlers.POSTINGS.dispatch(session, event)

    def order(m: uuid.UUID, amount: int, order_id: uuid.UUID | None = None) -> OrderConfirmed:
        return order_event(group, m, eur(amount), method=PaymentMethod.MONEY_POT, order_id=order_id, product="p")

    async def last_transaction() -> uuid.UUID:
        from sqlalchemy import text

        async with db.sessionmaker() as session:
            return await session.scalar(
                text(
                    "SELECT transaction_id FROM transactions WHERE group_id = :g ORDER BY posted_at DESC, "
                    "(SELECT max(posting_id) FROM postings p WHERE "
                    "p.transaction_id = transactions.transaction_id) DESC "
                    "LIMIT 1"
                ),
                {"g": group},
            )

    for op in ops:
        kind = op[0]
        if kind in ("order", "payment", "refund"):
            m, amount = members[op[1]], op[2]
            if kind == "order":
                event = order(m, amount)
                delta = -amount
            elif kind == "payment":
                event = PaymentReceived(
                    group_id=group, payment_id=uuid.uuid4(), member_id=m, amount=eur(amount), method=op[3]
                )
                delta = amount
            else:
                event = payment_event(
                    PaymentRefunded, group, m, eur(amount), PaymentMethod.CASH, refund_id=uuid.uuid4()
                )
                delta = -amount
            await run(event)
            expected[m] += delta
            posted.append((await last_transaction(), {m: delta}))
            replayable.append(event)
        elif kind == "correction":
            m, amount = members[op[1]], op[2]
            draft = domain.correction(
                group,
                m,
                eur(amount),
                reason="property",
                against=domain.AccountType.SALES,
                key=f"correction:{uuid.uuid4()}",
                recorded_by=None,
            )
            async with db.transaction() as session:
                result = await operations.adjust(session, draft)
            expected[m] += amount
            posted.append((result.transaction_id, {m: amount}))
            replayable.append(draft)
        elif kind == "reverse" and posted:
            tx, deltas = posted[op[1] % len(posted)]
            try:
                async with db.transaction() as session:
                    result = await operations.reverse(session, group, tx, reason="property", recorded_by=None)
            except Conflict:
                assert tx in reversed_ids
                continue
            if not result.replayed:
                assert tx not in reversed_ids
                reversed_ids.add(tx)
                for m, delta in deltas.items():
                    expected[m] -= delta
        elif kind == "replay" and replayable:
            item = replayable[op[1] % len(replayable)]
            if isinstance(item, domain.TransactionDraft):
                async with db.transaction() as session:
                    assert (await operations.adjust(session, item)).replayed
            else:
                await run(item.model_copy(update={"event_id": uuid.uuid4()}))  # redelivered under a new id
        elif kind == "hold":
            m, amount = members[op[1]], op[2]
            request = PlaceHold(
                hold_id=uuid.uuid4(),
                group_id=group,
                member_id=m,
                order_id=uuid.uuid4(),
                amount=eur(amount),
                expires_at=datetime.now(UTC) + timedelta(minutes=5),
            )
            async with db.transaction() as session:
                decision = await operations.place_hold(session, request)
            if not allow_negative:
                assert decision.granted == (decision.available.amount >= 0 and decision.reason is None)
                if decision.granted:
                    assert decision.available.amount >= 0
            if decision.granted:
                grants.append(request)
            async with db.transaction() as session:
                assert await operations.place_hold(session, request) == decision  # same id, same decision
        elif kind == "capture" and grants:
            request = grants.pop(op[1] % len(grants))
            await run(order(request.member_id, request.amount.amount, request.order_id))
            expected[request.member_id] -= request.amount.amount
            posted.append((await last_transaction(), {request.member_id: -request.amount.amount}))
        elif kind == "release" and grants:
            request = grants.pop(op[1] % len(grants))
            async with db.transaction() as session:
                assert await operations.release_hold(session, request.hold_id) == "released"

    async with db.sessionmaker() as session:
        report = await run_audit(session, group)
        assert report.ok, report.lines()
        from sqlalchemy import select

        rows = (
            await session.execute(
                select(accounts.c.member_id, accounts.c.balance).where(
                    accounts.c.group_id == group, accounts.c.member_id.is_not(None)
                )
            )
        ).all()
        held = {
            m: await operations.active_holds_total(session, await operations.member_account_id(session, group, m))
            for m in {r.member_id for r in rows}
        }
    assert {r.member_id: r.balance for r in rows} == expected
    assert {m: h for m, h in held.items() if h} == {
        m: total for m in members if (total := sum(g.amount.amount for g in grants if g.member_id == m))
    }


async def test_invalid_operations_change_nothing(db: Database) -> None:
    group, m = uuid.uuid4(), uuid.uuid4()
    async with db.transaction() as session:
        await handlers.POSTINGS.dispatch(
            session, GroupSettingsChanged(group_id=group, name="g", currency="EUR", payments_enabled=True)
        )
    for bad in (
        lambda: domain.correction(
            group, m, eur(0), reason="x", against=domain.AccountType.SALES, key="k", recorded_by=None
        ),
        lambda: domain.opening_balance(group, m, eur(0), recorded_by=None),
    ):
        try:
            bad()
        except Invalid:
            pass
        else:
            raise AssertionError("expected Invalid")
    async with db.sessionmaker() as session:
        report = await run_audit(session, group)
    assert report.ok and report.scopes == []


posting_event = st.one_of(
    st.tuples(st.just("order"), member, cents),
    st.tuples(st.just("refund"), member, cents),
    st.tuples(st.just("payment"), member, cents),
    st.tuples(st.just("replay"), st.integers(0, 40)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(posting_event, min_size=1, max_size=40), cuts=st.lists(st.integers(1, 40), max_size=6))
async def test_batches_post_exactly_what_one_by_one_posts(db: Database, ops: list[tuple], cuts: list[int]) -> None:
    """The batched path (many events per database transaction, any batch boundaries) leaves the
    same balances and running balances as the per-event path, and the audit passes."""
    from sqlalchemy import text

    from cagette_runtime.inbox import claim_many

    results = []
    for batched in (False, True):
        group = uuid.uuid4()
        members = [uuid.uuid4() for _ in range(MEMBERS)]
        events: list = [GroupSettingsChanged(group_id=group, name="g", currency="EUR", payments_enabled=True)]
        for op in ops:
            if op[0] == "replay":
                posted = [e for e in events[1:]]
                if posted:
                    events.append(posted[op[1] % len(posted)].model_copy(update={"event_id": uuid.uuid4()}))
                continue
            m, amount = members[op[1]], op[2]
            if op[0] == "order":
                events.append(order_event(group, m, eur(amount), product="p"))
            elif op[0] == "refund":
                events.append(
                    payment_event(PaymentRefunded, group, m, eur(amount), PaymentMethod.CASH, refund_id=uuid.uuid4())
                )
            else:
                events.append(payment_event(PaymentReceived, group, m, eur(amount), PaymentMethod.CHEQUE))
        if batched:
            bounds = sorted({0, len(events), *(c for c in cuts if c < len(events))})
            for start, end in zip(bounds, bounds[1:], strict=False):
                async with db.transaction() as session:
                    await handlers.dispatch_batch(
                        session, await claim_many(session, f"prop-{group}", events[start:end])
                    )
        else:
            for event in events:
                async with db.transaction() as session:
                    await handlers.POSTINGS.dispatch(session, event)
        async with db.sessionmaker() as session:
            assert (await run_audit(session, group)).ok
            rows = (
                await session.execute(
                    text(
                        "SELECT a.type, a.member_id, p.amount, p.balance_after"
                        " FROM postings p JOIN accounts a USING (account_id)"
                        " WHERE a.group_id = :g ORDER BY p.posting_id"
                    ),
                    {"g": group},
                )
            ).all()
        index = {m: i for i, m in enumerate(members)}
        results.append([(r.type, index.get(r.member_id), r.amount, r.balance_after) for r in rows])
    assert results[0] == results[1]


payment_story = st.tuples(
    st.lists(st.sampled_from(["declared", "received", "cancelled"]), min_size=1, max_size=3, unique=True),
    st.integers(1, 10_000),  # declared amount
    st.integers(1, 10_000),  # received amount (corrected at validation)
)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(stories=st.lists(payment_story, min_size=1, max_size=6), data=st.data())
async def test_payments_in_any_delivery_order(db: Database, stories: list[tuple], data: st.DataObject) -> None:
    """Declared / received / cancelled events of several payments, interleaved and each in any
    order: the balance counts exactly what was received, a payment is pending only when it was
    declared and nothing else happened, and the only refusal (parked, changing nothing) is a
    cancellation after the money was received."""
    from cagette_contracts import PaymentCancelled, PaymentDeclared

    group, m = uuid.uuid4(), uuid.uuid4()
    async with db.transaction() as session:
        await handlers.POSTINGS.dispatch(
            session, GroupSettingsChanged(group_id=group, name="g", currency="EUR", payments_enabled=True)
        )
    queue = []
    for index, (steps, declared, received) in enumerate(stories):
        payment_id = uuid.uuid4()
        for step in steps:
            kind, cents = {
                "declared": (PaymentDeclared, declared),
                "received": (PaymentReceived, received),
                "cancelled": (PaymentCancelled, declared),
            }[step]
            event = payment_event(kind, group, m, eur(cents), PaymentMethod.CHEQUE, payment_id=payment_id)
            queue.append((index, step, event))
    order = data.draw(st.permutations(queue))
    parked = []
    for index, step, event in order:
        try:
            async with db.transaction() as session:
                await handlers.POSTINGS.dispatch(session, event)
        except Invalid:
            parked.append((index, step))

    expected_parked, expected_balance, expected_pending = [], 0, 0
    for index, (_steps, declared, received) in enumerate(stories):
        seen = [step for i, step, _ in order if i == index]
        if "received" in seen:
            expected_balance += received
        if seen == ["declared"]:
            expected_pending += declared
        if "received" in seen and "cancelled" in seen and seen.index("received") < seen.index("cancelled"):
            expected_parked.append((index, "cancelled"))
    assert sorted(parked) == sorted(expected_parked)
    async with db.sessionmaker() as session:
        from sqlalchemy import text

        account = await operations.member_account_id(session, group, m)
        balance = await session.scalar(text("SELECT balance FROM accounts WHERE account_id = :a"), {"a": account})
        pending = await session.scalar(
            text("SELECT coalesce(sum(amount), 0) FROM pending_entries WHERE account_id = :a AND status = 'pending'"),
            {"a": account},
        )
        assert (await run_audit(session, group)).ok
    assert (balance or 0, int(pending)) == (expected_balance, expected_pending)
