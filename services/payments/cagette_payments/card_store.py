"""Rows of online card payments in and out (SQLAlchemy Core): the groups' card set-up, what
orders awaits by card, the attempts and their history, refund requests, the disputes' money and
failed refunds, background fee jobs and the provider's events. No rule here (card_usecases.py,
card_effects.py and domain/card.py hold them); row locks: card payment, then its rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Row, Table, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_runtime.clock import now
from cagette_runtime.correlation import peek_correlation_id
from cagette_runtime.pagination import PageRequest

from .domain.card import CardState
from .domain.notices import Source
from .tables import (
    card_dispute_funds,
    card_dues,
    card_failed_refunds,
    card_jobs,
    card_payment_history,
    card_payments,
    card_refund_requests,
    card_settings,
    provider_events,
)

PROVIDER = "stripe"
FEE_JOB = "fee"

# -- a group's card set-up ---------------------------------------------------------------------


async def _card_settings(session: AsyncSession, which: ColumnElement[bool], lock: bool) -> Row | None:
    query = select(card_settings).where(which)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def group_card_settings(session: AsyncSession, group_id: UUID, *, lock: bool = False) -> Row | None:
    return await _card_settings(session, card_settings.c.group_id == group_id, lock)


async def save_card_settings(session: AsyncSession, group_id: UUID, values: dict[str, Any]) -> Row:
    statement = pg_insert(card_settings).values(group_id=group_id, **values)
    await session.execute(statement.on_conflict_do_update(index_elements=[card_settings.c.group_id], set_=values))
    row = await group_card_settings(session, group_id)
    assert row is not None
    return row


async def card_settings_by_account(session: AsyncSession, account: str, *, lock: bool = False) -> Row | None:
    return await _card_settings(session, card_settings.c.stripe_account == account, lock)


async def save_account_status(session: AsyncSession, group_id: UUID, values: dict[str, Any]) -> Row:
    """The connected account's state as the provider last described it."""
    await session.execute(update(card_settings).where(card_settings.c.group_id == group_id).values(**values))
    row = await group_card_settings(session, group_id)
    assert row is not None
    return row


async def mark_announced(
    session: AsyncSession, group_id: UUID, *, ready: bool, connected: bool, account_problem: str | None
) -> None:
    await session.execute(
        update(card_settings)
        .where(card_settings.c.group_id == group_id)
        .values(announced_ready=ready, announced_connected=connected, announced_account_problem=account_problem)
    )


async def all_card_settings(session: AsyncSession, group_id: UUID | None = None) -> list[Row]:
    """Every group's card set-up (locked, in a fixed order: replicas announce once)."""
    statement = select(card_settings).order_by(card_settings.c.group_id).with_for_update()
    if group_id is not None:
        statement = statement.where(card_settings.c.group_id == group_id)
    return list(await session.execute(statement))


# -- what orders awaits by card ----------------------------------------------------------------


async def insert_due(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pg_insert(card_dues).values(**values).on_conflict_do_nothing())


async def lock_due(session: AsyncSession, group_id: UUID, order_id: UUID, due_id: UUID) -> Row | None:
    query = (
        select(card_dues)
        .where(card_dues.c.group_id == group_id, card_dues.c.due_id == due_id, card_dues.c.order_id == order_id)
        .with_for_update()
    )
    return (await session.execute(query)).first()


# -- card payments (one row per attempt) -------------------------------------------------------


async def attempts_of(session: AsyncSession, due_id: UUID) -> list[Row]:
    return list(
        await session.execute(
            select(card_payments).where(card_payments.c.due_id == due_id).order_by(card_payments.c.attempt)
        )
    )


async def insert_card_payment(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(card_payments).values(**values))


async def update_card_payment(session: AsyncSession, payment_id: UUID, **values: Any) -> None:
    await session.execute(
        update(card_payments).where(card_payments.c.payment_id == payment_id).values(**values, updated_at=now())
    )


async def set_checkout_session(session: AsyncSession, payment_id: UUID, session_id: str, url: str | None) -> None:
    await session.execute(
        update(card_payments)
        .where(card_payments.c.payment_id == payment_id, card_payments.c.checkout_session_id.is_(None))
        .values(checkout_session_id=session_id, checkout_url=url, updated_at=now())
    )


async def get_card_payment(
    session: AsyncSession, group_id: UUID, payment_id: UUID, *, lock: bool = False
) -> Row | None:
    query = select(card_payments).where(card_payments.c.group_id == group_id, card_payments.c.payment_id == payment_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def card_payment_by_id(session: AsyncSession, payment_id: UUID, *, lock: bool = False) -> Row | None:
    query = select(card_payments).where(card_payments.c.payment_id == payment_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def payments_named_by(session: AsyncSession, source: Source) -> list[Row]:
    """The card payments (locked) a notification's ids name: our metadata, else the provider's
    ids we recorded."""
    conditions = []
    if source.payment_id is not None:
        conditions.append(card_payments.c.payment_id == source.payment_id)
    if source.session_id:
        conditions.append(card_payments.c.checkout_session_id == source.session_id)
    if source.payment_intent:
        conditions.append(card_payments.c.payment_intent_id == source.payment_intent)
    if source.charge_id:
        conditions.append(card_payments.c.charge_id == source.charge_id)
    if not conditions:
        return []
    return list(await session.execute(select(card_payments).where(or_(*conditions)).with_for_update()))


async def due_paid_otherwise(session: AsyncSession, due_id: UUID) -> bool:
    """Another attempt at the same due was paid."""
    paid = [s.value for s in (CardState.SUCCEEDED, CardState.PARTIALLY_REFUNDED, CardState.REFUNDED)]
    found = await session.execute(
        select(card_payments.c.payment_id).where(
            card_payments.c.due_id == due_id, card_payments.c.state.in_([*paid, CardState.DISPUTED.value])
        )
    )
    return found.first() is not None


async def group_card_payments(
    session: AsyncSession, group_id: UUID, page: PageRequest, *, state: str | None, disputed: bool | None
) -> list[Row]:
    """One page of the group's card payments, newest first."""
    query = select(card_payments).where(card_payments.c.group_id == group_id)
    if state is not None:
        query = query.where(card_payments.c.state == state)
    if disputed is not None:
        query = query.where(
            card_payments.c.dispute_id.isnot(None) if disputed else card_payments.c.dispute_id.is_(None)
        )
    by_date = (card_payments.c.created_at, card_payments.c.payment_id)
    return list(await session.execute(page.apply(query, *by_date, newest_first=True)))


async def order_card_payments(session: AsyncSession, group_id: UUID, order_id: UUID) -> list[Row]:
    return list(
        await session.execute(
            select(card_payments)
            .where(card_payments.c.group_id == group_id, card_payments.c.order_id == order_id)
            .order_by(card_payments.c.created_at)
        )
    )


async def _of_payment(session: AsyncSession, table: Table, payment_id: UUID, *order: str) -> list[Row]:
    """A card payment's rows of `table`, ordered by the columns `order` names."""
    query = select(table).where(table.c.payment_id == payment_id).order_by(*(table.c[name] for name in order))
    return list(await session.execute(query))


async def history_of(session: AsyncSession, payment_id: UUID) -> list[Row]:
    return await _of_payment(session, card_payment_history, payment_id, "id")


async def record_history(
    session: AsyncSession,
    payment_id: UUID,
    before: CardState | None,
    after: CardState,
    provider_event_id: str | None,
    note: str,
    at: datetime,
) -> None:
    await session.execute(
        insert(card_payment_history).values(
            payment_id=payment_id,
            from_state=before.value if before else None,
            to_state=after.value,
            provider_event_id=provider_event_id,
            note=note,
            at=at,
        )
    )


# -- refund requests, failed refunds, disputes' money -----------------------------------------


async def refund_request(session: AsyncSession, request_id: UUID) -> Row | None:
    found = await session.execute(select(card_refund_requests).where(card_refund_requests.c.request_id == request_id))
    return found.first()


async def requested_refunds_total(session: AsyncSession, payment_id: UUID) -> int:
    total = await session.execute(
        select(func.coalesce(func.sum(card_refund_requests.c.amount), 0)).where(
            card_refund_requests.c.payment_id == payment_id
        )
    )
    return int(total.scalar_one())


async def insert_refund_request(session: AsyncSession, values: dict[str, Any]) -> Row:
    await session.execute(insert(card_refund_requests).values(**values))
    row = await refund_request(session, values["request_id"])
    assert row is not None
    return row


async def set_refund_request_outcome(session: AsyncSession, request_id: UUID, refund_id: str, status: str) -> Row:
    await session.execute(
        update(card_refund_requests)
        .where(card_refund_requests.c.request_id == request_id)
        .values(provider_refund_id=refund_id, provider_status=status)
    )
    row = await refund_request(session, request_id)
    assert row is not None
    return row


async def refund_requests_of(session: AsyncSession, payment_id: UUID) -> list[Row]:
    return await _of_payment(session, card_refund_requests, payment_id, "requested_at")


async def _record_once(session: AsyncSession, table: Table, key: str, values: dict[str, Any]) -> bool:
    """Record the row now, unless one with its `key` was recorded already (then False)."""
    result = await session.execute(
        pg_insert(table).values(**values, recorded_at=now()).on_conflict_do_nothing().returning(table.c[key])
    )
    return result.first() is not None


async def record_failed_refund(session: AsyncSession, values: dict[str, Any]) -> bool:
    """False when this refund's failure was already recorded."""
    return await _record_once(session, card_failed_refunds, "refund_id", values)


async def record_dispute_funds(session: AsyncSession, values: dict[str, Any]) -> bool:
    """False when this balance transaction of the dispute was already recorded."""
    return await _record_once(session, card_dispute_funds, "transaction_id", values)


async def dispute_funds_of(session: AsyncSession, payment_id: UUID) -> list[Row]:
    return await _of_payment(session, card_dispute_funds, payment_id, "recorded_at", "transaction_id")


# -- the fee, fetched in the background --------------------------------------------------------


async def queue_fee_job(session: AsyncSession, payment_id: UUID) -> None:
    """The fee to fetch in the background, under the cause's correlation id (its success notice's)."""
    await session.execute(
        pg_insert(card_jobs)
        .values(payment_id=payment_id, kind=FEE_JOB, correlation_id=peek_correlation_id())
        .on_conflict_do_nothing()
    )


async def claim_fee_jobs(session: AsyncSession, limit: int = 10) -> list[Row]:
    """Due fee jobs, pushed back a minute (claimed) so another replica or pass leaves them alone."""
    rows = list(
        await session.execute(
            select(
                card_jobs,
                card_payments.c.group_id,
                card_payments.c.payment_intent_id,
                card_payments.c.charge_id,
                card_payments.c.stripe_account,
            )
            .join(card_payments, card_payments.c.payment_id == card_jobs.c.payment_id)
            .where(card_jobs.c.done_at.is_(None), card_jobs.c.next_attempt_at <= func.now())
            .order_by(card_jobs.c.next_attempt_at)
            .limit(limit)
            .with_for_update(of=card_jobs, skip_locked=True)
        )
    )
    for row in rows:
        await session.execute(
            update(card_jobs)
            .where(card_jobs.c.payment_id == row.payment_id, card_jobs.c.kind == row.kind)
            .values(attempts=row.attempts + 1, next_attempt_at=func.now() + timedelta(seconds=60))
        )
    return rows


async def fee_job_done(session: AsyncSession, payment_id: UUID) -> None:
    await session.execute(
        update(card_jobs)
        .where(card_jobs.c.payment_id == payment_id, card_jobs.c.kind == FEE_JOB)
        .values(done_at=func.now(), last_error=None)
    )


async def fee_job_failed(session: AsyncSession, payment_id: UUID, error: str, attempts: int) -> None:
    delay = min(3600, 5 * 2 ** min(attempts, 10))
    await session.execute(
        update(card_jobs)
        .where(card_jobs.c.payment_id == payment_id, card_jobs.c.kind == FEE_JOB)
        .values(last_error=error[:1000], next_attempt_at=func.now() + timedelta(seconds=delay))
    )


# -- provider events (stored once) ------------------------------------------------------------


async def store_event(session: AsyncSession, event: dict[str, Any]) -> bool:
    """Store the provider event by its id; False when it was already stored (a replay)."""
    result = await session.execute(
        pg_insert(provider_events)
        .values(
            event_id=str(event["id"]),
            provider=PROVIDER,
            type=str(event.get("type") or ""),
            account=event.get("account") if isinstance(event.get("account"), str) else None,
            livemode=bool(event.get("livemode")),
            provider_created=event.get("created") if isinstance(event.get("created"), int) else None,
            payload=event,
            outcome="ignored",
            received_at=now(),
        )
        .on_conflict_do_nothing()
        .returning(provider_events.c.event_id)
    )
    return result.first() is not None


async def set_event_outcome(
    session: AsyncSession, event_id: str, outcome: str, note: str, payment_id: UUID | None
) -> None:
    await session.execute(
        update(provider_events)
        .where(provider_events.c.event_id == event_id)
        .values(
            outcome=outcome,
            note=note[:2000],
            payment_id=payment_id,
            resolved_at=now() if outcome != "parked" else None,
        )
    )


async def parked_events(session: AsyncSession, *, payment: Row | None = None, lock: bool = False) -> list[Row]:
    query = select(provider_events).where(provider_events.c.outcome == "parked")
    if payment is not None:
        obj = provider_events.c.payload["data"]["object"]
        ids = [i for i in (payment.payment_intent_id, payment.charge_id, payment.checkout_session_id) if i]
        conditions = [obj["metadata"]["cagette_payment_id"].astext == str(payment.payment_id)]
        for value in ids:
            conditions += [
                obj["payment_intent"].astext == value,
                obj["charge"].astext == value,
                obj["id"].astext == value,
            ]
        query = query.where(or_(*conditions))
    query = query.order_by(provider_events.c.received_at)
    if lock:
        query = query.with_for_update(skip_locked=True)
    return list(await session.execute(query))


async def parked_page(session: AsyncSession, page: PageRequest) -> list[Row]:
    """One page of the parked provider events, oldest first."""
    query = select(provider_events).where(provider_events.c.outcome == "parked")
    return list(await session.execute(page.apply(query, provider_events.c.received_at, provider_events.c.event_id)))


async def get_event(session: AsyncSession, event_id: str, *, lock: bool = False) -> Row | None:
    query = select(provider_events).where(provider_events.c.event_id == event_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).first()
