"""What orders does with the events it consumes (one database transaction each, idempotent
through the runtime's inbox): card payment outcomes (R21, B6), basket validation (R20) and the
group's card readiness announced by the payments service."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    BasketUnvalidated,
    BasketValidated,
    CardPaymentFailed,
    CardPaymentSucceeded,
    CardSettingsChanged,
    Event,
    Money,
    OrderAmended,
    OrderConfirmed,
    OrderLine,
    PaymentMethod,
    routing,
)
from cagette_runtime import outbox
from cagette_runtime.consumer import Consumer
from cagette_runtime.errors import Invalid
from cagette_runtime.topology import ConsumerQueue

from . import domain
from .api import GroupOut, payment_settings, settings_event
from .tables import basket_locks, groups, order_amendments, order_lines, orders

QUEUE = "orders.payment-outcomes"


def _lines(rows, currency: str) -> list[OrderLine]:  # type: ignore[no-untyped-def]
    return [
        OrderLine(
            product_id=row.product_id,
            product_name=row.product_name,
            quantity=domain.plain(row.quantity),
            unit_price=Money(amount=row.unit_price, currency=currency),
            fee_rate=domain.plain(row.fee_rate),
            line_total=Money(amount=row.line_total, currency=currency),
        )
        for row in rows
    ]


async def _order(session: AsyncSession, event: CardPaymentSucceeded | CardPaymentFailed):  # type: ignore[no-untyped-def]
    row = (
        await session.execute(
            select(orders)
            .where(orders.c.order_id == event.order_id, orders.c.group_id == event.group_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise Invalid(f"no order {event.order_id} in group {event.group_id}")
    if row.member_id != event.member_id:
        raise Invalid(f"order {event.order_id} belongs to another member")
    return row


async def _amendment(session: AsyncSession, event: CardPaymentSucceeded | CardPaymentFailed):  # type: ignore[no-untyped-def]
    row = (
        await session.execute(
            select(order_amendments)
            .where(order_amendments.c.amendment_id == event.amendment_id, order_amendments.c.order_id == event.order_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise Invalid(f"no amendment {event.amendment_id} of order {event.order_id}")
    return row


async def on_card_succeeded(session: AsyncSession, event: CardPaymentSucceeded) -> None:
    """Confirm what was paid and publish its confirmation; a payment after abandonment is honoured
    (the money was taken) and flagged for the coordinator. A second success for something already
    confirmed is refused, so the message is parked for an operator (likely a double charge)."""
    if event.order_id is None:
        return  # a card payment for something else (e.g. a subscription): nothing to confirm here
    order = await _order(session, event)
    if order.payment_method != PaymentMethod.CARD.value:
        raise Invalid(f"order {order.order_id} is paid by {order.payment_method}, not by card")
    if event.amendment_id is not None:
        amendment = await _amendment(session, event)
        domain.check_card_amount(event.amount, Money(amount=amendment.added_total, currency=order.currency))
        outcome = domain.on_card_succeeded(domain.OrderStatus(amendment.status))
        await session.execute(
            update(order_amendments)
            .where(order_amendments.c.amendment_id == amendment.amendment_id)
            .values(status=outcome.status.value, flagged_reason=outcome.flag, updated_at=func.now())
        )
        new_total = order.total_amount + amendment.added_total
        await session.execute(
            update(orders)
            .where(orders.c.order_id == order.order_id)
            .values(total_amount=new_total, updated_at=func.now())
        )
        rows = (
            await session.execute(
                select(order_lines)
                .where(order_lines.c.amendment_id == amendment.amendment_id)
                .order_by(order_lines.c.line_number)
            )
        ).all()
        await outbox.add(
            session,
            OrderAmended(
                **outbox.event_context(order.group_id),
                order_id=order.order_id,
                amendment_id=amendment.amendment_id,
                member_id=order.member_id,
                distribution_id=order.distribution_id,
                payment_method=PaymentMethod.CARD,
                added_lines=_lines(rows, order.currency),
                added_total=Money(amount=amendment.added_total, currency=order.currency),
                new_total=Money(amount=new_total, currency=order.currency),
            ),
        )
        return
    total = Money(amount=order.total_amount, currency=order.currency)
    domain.check_card_amount(event.amount, total)
    outcome = domain.on_card_succeeded(domain.OrderStatus(order.status))
    await session.execute(
        update(orders)
        .where(orders.c.order_id == order.order_id)
        .values(status=outcome.status.value, flagged_reason=outcome.flag, updated_at=func.now())
    )
    rows = (
        await session.execute(
            select(order_lines)
            .where(order_lines.c.order_id == order.order_id, order_lines.c.amendment_id.is_(None))
            .order_by(order_lines.c.line_number)
        )
    ).all()
    await outbox.add(
        session,
        OrderConfirmed(
            **outbox.event_context(order.group_id),
            order_id=order.order_id,
            member_id=order.member_id,
            distribution_id=order.distribution_id,
            payment_method=PaymentMethod.CARD,
            lines=_lines(rows, order.currency),
            total=total,
        ),
    )


async def on_card_failed(session: AsyncSession, event: CardPaymentFailed) -> None:
    """The basket stays for the member to retry or abandon; an addition whose payment failed is
    dropped (the member may add again; a late success is still honoured, flagged)."""
    if event.order_id is None:
        return
    order = await _order(session, event)
    if event.amendment_id is not None:
        amendment = await _amendment(session, event)
        if amendment.status == domain.OrderStatus.AWAITING_PAYMENT.value:
            await session.execute(
                update(order_amendments)
                .where(order_amendments.c.amendment_id == amendment.amendment_id)
                .values(status=domain.OrderStatus.ABANDONED.value, updated_at=func.now())
            )
        return
    state = domain.on_card_failed(domain.OrderStatus(order.status))
    await session.execute(
        update(orders).where(orders.c.order_id == order.order_id).values(status=state.value, updated_at=func.now())
    )


async def on_basket_validated(session: AsyncSession, event: BasketValidated) -> None:
    await session.execute(
        pg_insert(basket_locks)
        .values(
            group_id=event.group_id,
            distribution_id=event.distribution_id,
            member_id=event.member_id,
            validated_by=event.validated_by,
            validated_at=event.occurred_at,
        )
        .on_conflict_do_nothing()
    )


async def on_basket_unvalidated(session: AsyncSession, event: BasketUnvalidated) -> None:
    await session.execute(
        delete(basket_locks).where(
            basket_locks.c.group_id == event.group_id,
            basket_locks.c.distribution_id == event.distribution_id,
            basket_locks.c.member_id == event.member_id,
        )
    )


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
        settings = domain.PaymentSettings(
            settings.payments_enabled,
            settings.payment_methods,
            settings.allow_negative_money_pot,
            settings.cheque_payee,
            settings.transfer_iban,
            settings.transfer_bic,
            True,
            settings.order_cutoff_hours,
        )
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


async def dispatch(session: AsyncSession, event: Event) -> None:
    match event:
        case CardPaymentSucceeded():
            await on_card_succeeded(session, event)
        case CardPaymentFailed():
            await on_card_failed(session, event)
        case BasketValidated():
            await on_basket_validated(session, event)
        case BasketUnvalidated():
            await on_basket_unvalidated(session, event)
        case CardSettingsChanged():
            await on_card_settings_changed(session, event)
        case _:
            raise Invalid(f"orders does not handle {event.routing_key()}")


ACCEPTS = (CardPaymentSucceeded, CardPaymentFailed, BasketValidated, BasketUnvalidated, CardSettingsChanged)


def consumers(service) -> list[Consumer]:  # type: ignore[no-untyped-def]
    return [
        Consumer(
            queue=ConsumerQueue(
                QUEUE,
                routing_keys=(
                    routing.CARD_PAYMENT_SUCCEEDED,
                    routing.CARD_PAYMENT_FAILED,
                    routing.BASKET_VALIDATED,
                    routing.BASKET_UNVALIDATED,
                    routing.CARD_SETTINGS_CHANGED,
                ),
                delivery_limit=service.settings.delivery_limit,
            ),
            handler=dispatch,
            accepts=ACCEPTS,
        )
    ]
