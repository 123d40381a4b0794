"""What orders does with the events it consumes (one database transaction each, idempotent
through the runtime's inbox): card payment outcomes (R21, B6), basket validation (R20) and the
group's card readiness announced by the payments service."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    BasketUnvalidated,
    BasketValidated,
    CardPaymentFailed,
    CardPaymentSucceeded,
    CardSettingsChanged,
    Money,
    OrderAmended,
    OrderConfirmed,
    PaymentMethod,
)
from cagette_runtime import outbox
from cagette_runtime.consumer import Consumer
from cagette_runtime.errors import Invalid
from cagette_runtime.outbox import EventContext

from . import domain, store
from .store import GroupOut, payment_settings
from .tables import basket_locks, groups, order_lines
from .usecases import settings_event

if TYPE_CHECKING:
    from cagette_runtime.service import Service

QUEUE = "orders.payment-outcomes"


async def _order(session: AsyncSession, event: CardPaymentSucceeded | CardPaymentFailed) -> Row[Any]:
    row = await store.order_row_for_update(session, event.group_id, event.order_id) if event.order_id else None
    if row is None:
        raise Invalid(f"no order {event.order_id} in group {event.group_id}")
    if row.member_id != event.member_id:
        raise Invalid(f"order {event.order_id} belongs to another member")
    return row


async def _amendment(session: AsyncSession, order_id: UUID, amendment_id: UUID) -> Row[Any]:
    row = await store.amendment_row_for_update(session, order_id, amendment_id)
    if row is None:
        raise Invalid(f"no amendment {amendment_id} of order {order_id}")
    return row


class _PaidByCard(EventContext):
    """What OrderAmended and OrderConfirmed both say of an order paid by card."""

    order_id: UUID
    member_id: UUID
    distribution_id: UUID
    payment_method: PaymentMethod


async def on_card_succeeded(session: AsyncSession, event: CardPaymentSucceeded) -> None:
    """Confirm what was paid and publish its confirmation; a payment after abandonment is honoured
    (the money was taken) and flagged for the coordinator. A second success for something already
    confirmed is refused, so the message is parked for an operator (likely a double charge)."""
    if event.order_id is None:
        return  # a card payment for something else (e.g. a subscription): nothing to confirm here
    order = await _order(session, event)
    if order.payment_method != PaymentMethod.CARD.value:
        raise Invalid(f"order {order.order_id} is paid by {order.payment_method}, not by card")
    paid = _PaidByCard(
        **outbox.event_context(order.group_id),
        order_id=order.order_id,
        member_id=order.member_id,
        distribution_id=order.distribution_id,
        payment_method=PaymentMethod.CARD,
    )
    if event.amendment_id is not None:
        amendment = await _amendment(session, order.order_id, event.amendment_id)
        added_total = Money(amount=amendment.added_total, currency=order.currency)
        domain.check_card_amount(event.amount, added_total)
        outcome = domain.on_card_succeeded(domain.OrderStatus(amendment.status))
        await store.set_amendment(
            session, amendment.amendment_id, status=outcome.status.value, flagged_reason=outcome.flag
        )
        new_total = Money(amount=order.total_amount, currency=order.currency) + added_total
        await store.set_order(session, order.order_id, total_amount=new_total.amount)
        await outbox.add(
            session,
            OrderAmended(
                **paid,
                amendment_id=amendment.amendment_id,
                added_lines=await store.contract_lines(
                    session, order_lines.c.amendment_id == amendment.amendment_id, order.currency
                ),
                added_total=added_total,
                new_total=new_total,
            ),
        )
        return
    total = Money(amount=order.total_amount, currency=order.currency)
    domain.check_card_amount(event.amount, total)
    outcome = domain.on_card_succeeded(domain.OrderStatus(order.status))
    await store.set_order(session, order.order_id, status=outcome.status.value, flagged_reason=outcome.flag)
    placed = (order_lines.c.order_id == order.order_id) & order_lines.c.amendment_id.is_(None)
    await outbox.add(
        session,
        OrderConfirmed(**paid, lines=await store.contract_lines(session, placed, order.currency), total=total),
    )


async def on_card_failed(session: AsyncSession, event: CardPaymentFailed) -> None:
    """The basket stays for the member to retry or abandon; an addition whose payment failed is
    dropped (the member may add again; a late success is still honoured, flagged)."""
    if event.order_id is None:
        return
    order = await _order(session, event)
    if event.amendment_id is not None:
        amendment = await _amendment(session, order.order_id, event.amendment_id)
        if amendment.status == domain.OrderStatus.AWAITING_PAYMENT.value:
            await store.set_amendment(session, amendment.amendment_id, status=domain.OrderStatus.ABANDONED.value)
        return
    state = domain.on_card_failed(domain.OrderStatus(order.status))
    await store.set_order(session, order.order_id, status=state.value)


def _basket(event: BasketValidated | BasketUnvalidated) -> dict[str, UUID]:
    """The basket a (un)validation is about: one member's at one distribution of the group."""
    return {"group_id": event.group_id, "distribution_id": event.distribution_id, "member_id": event.member_id}


async def on_basket_validated(session: AsyncSession, event: BasketValidated) -> None:
    lock = pg_insert(basket_locks).values(
        **_basket(event), validated_by=event.validated_by, validated_at=event.occurred_at
    )
    await session.execute(lock.on_conflict_do_nothing())


async def on_basket_unvalidated(session: AsyncSession, event: BasketUnvalidated) -> None:
    basket = [basket_locks.c[name] == value for name, value in _basket(event).items()]
    await session.execute(delete(basket_locks).where(*basket))


async def on_card_settings_changed(session: AsyncSession, event: CardSettingsChanged) -> None:
    """The payments service announced the group's card readiness: `card_payments_configured`
    follows it. Readiness lost removes card from the methods (unless it is the only method with
    payments on: kept, and card orders are refused until it is back). A change publishes
    GroupSettingsChanged (full state); an event older than the last one applied changes nothing."""
    row = (
        (await session.execute(select(groups).where(groups.c.group_id == event.group_id).with_for_update()))
        .mappings()
        .first()
    )
    if row is None:
        raise Invalid(f"no group {event.group_id}")
    if row["card_settings_at"] is not None and event.occurred_at <= row["card_settings_at"]:
        return  # an older announcement delivered late
    current = GroupOut.model_validate(dict(row))
    settings = payment_settings(current)
    if event.card_payments_ready:
        settings = dataclasses.replace(settings, card_configured=True)
    else:
        settings = settings.without_card()
    group = current.model_copy(
        update={
            "card_payments_configured": settings.card_configured,
            "payment_methods": list(settings.payment_methods),
        }
    )
    values: dict[str, object] = {"card_settings_at": event.occurred_at}
    if group != current:
        values |= {
            "card_payments_configured": group.card_payments_configured,
            "payment_methods": [m.value for m in group.payment_methods],
            "updated_at": func.now(),
        }
        await outbox.add(session, settings_event(group))
    await session.execute(update(groups).where(groups.c.group_id == event.group_id).values(**values))


def consumers(service: Service) -> list[Consumer]:
    return [
        Consumer(
            QUEUE,
            {
                CardPaymentSucceeded: on_card_succeeded,
                CardPaymentFailed: on_card_failed,
                BasketValidated: on_basket_validated,
                BasketUnvalidated: on_basket_unvalidated,
                CardSettingsChanged: on_card_settings_changed,
            },
            delivery_limit=service.settings.delivery_limit,
            batched=True,  # its handlers write rows only
        )
    ]
