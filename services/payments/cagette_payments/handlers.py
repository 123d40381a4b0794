"""What payments does with the events it consumes (one queue for the orders events, so a group's
settings, members and orders are applied in the order orders published them).

Each handler runs in the consumer's transaction, after the event id was claimed in the inbox,
so a redelivered event has no second effect."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    GroupSettingsChanged,
    MemberJoined,
    MemberUpdated,
    Money,
    OrderAmended,
    OrderAwaitingPayment,
    OrderConfirmed,
    OrderLine,
    OrderLineUndelivered,
    SubscriptionAmended,
    SubscriptionConfirmed,
)
from cagette_runtime.consumer import Consumer

from . import card_usecases, store, usecases
from .domain.methods import Method

if TYPE_CHECKING:
    from cagette_runtime.service import Service


def _lines(lines: list[OrderLine]) -> list[dict]:
    return json.loads(json.dumps([line.model_dump(mode="json") for line in lines]))


async def on_group_settings_changed(session: AsyncSession, event: GroupSettingsChanged) -> None:
    await store.upsert_group(
        session,
        {
            "group_id": event.group_id,
            "name": event.name,
            "currency": event.currency,
            "payments_enabled": event.payments_enabled,
            "payment_methods": [m.value for m in event.payment_methods],
            "cheque_payee": event.cheque_payee,
            "transfer_iban": event.transfer_iban,
            "transfer_bic": event.transfer_bic,
            "settings_at": event.occurred_at,
        },
    )


async def on_member_joined(session: AsyncSession, event: MemberJoined | MemberUpdated) -> None:
    await store.upsert_member(session, event.group_id, event.member_id, event.name, event.role.value)


OwingEvent = OrderConfirmed | OrderAmended | OrderLineUndelivered | SubscriptionConfirmed | SubscriptionAmended

# The owed item's columns that the events carry under the same names (each event some of them).
SAME_NAMES = (
    "distribution_id",
    "order_id",
    "amendment_id",
    "subscription_id",
    "contract_id",
    "contract_name",
    "distribution_count",
)


async def _owe(
    session: AsyncSession,
    event: OwingEvent,
    item_id: UUID,
    kind: str,
    owed: Money,
    lines: list[dict[str, Any]],
    payment_method: str,
    **item: Any,
) -> bool:
    """Record what the event makes the member owe (signed: an undelivered line owes less), once:
    False when its item was recorded already."""
    await store.ensure_member(session, event.group_id, event.member_id)
    return await store.insert_owed(
        session,
        {
            "item_id": item_id,
            "kind": kind,
            "group_id": event.group_id,
            "member_id": event.member_id,
            **{name: getattr(event, name) for name in SAME_NAMES if hasattr(event, name)},
            "payment_method": payment_method,
            "amount": owed.amount,
            "currency": owed.currency,
            "lines": lines,
            "event_id": event.event_id,
            "occurred_at": event.occurred_at,
            **item,
        },
    )


async def _declare(
    session: AsyncSession, event: OrderConfirmed | OrderAmended, amount: Money, amendment_id: UUID | None = None
) -> None:
    """The declared payment an order (or its addition, the amendment) now waits for, in the
    member's basket."""
    if event.distribution_id is not None:
        await store.ensure_basket(session, event.group_id, event.distribution_id, event.member_id)
    await usecases.declare_for_order(
        session,
        group_id=event.group_id,
        member_id=event.member_id,
        method=Method.from_contract(event.payment_method),
        amount=amount,
        source="order" if amendment_id is None else "amendment",
        item_id=amendment_id or event.order_id,
        order_id=event.order_id,
        amendment_id=amendment_id,
        distribution_id=event.distribution_id,
    )


async def on_order_confirmed(session: AsyncSession, event: OrderConfirmed) -> None:
    recorded = await _owe(
        session, event, event.order_id, "order", event.total, _lines(event.lines), event.payment_method.value
    )
    if recorded:
        await _declare(session, event, event.total)


async def on_order_amended(session: AsyncSession, event: OrderAmended) -> None:
    """A complementary payment (R6): its own declared payment and its own reference."""
    lines = _lines(event.added_lines)
    recorded = await _owe(
        session, event, event.amendment_id, "amendment", event.added_total, lines, event.payment_method.value
    )
    if recorded:
        await _declare(session, event, event.added_total, event.amendment_id)


async def on_order_line_undelivered(session: AsyncSession, event: OrderLineUndelivered) -> None:
    """A product not delivered (R6): the basket owes that much less, an owed item of its own
    (negative) beside the order, so the basket's figures and the takings say what is really due.
    Recorded even once the basket was validated (that is when it shows): it then reads overpaid
    by that much, a credit the member keeps on their account (R4) unless a coordinator refunds it."""
    line = {
        "line_number": event.line_number,
        "product_id": str(event.product_id) if event.product_id else None,
        "product_name": event.product_name,
        "unit": event.unit,
        "quantity": str(event.quantity),
        "unit_price": event.unit_price.model_dump(mode="json"),
        "line_total": {"amount": -event.amount.amount, "currency": event.amount.currency},
        "reason": event.reason,
    }
    recorded = await _owe(
        session, event, event.removal_id, "undelivered", -event.amount, [line], event.payment_method.value
    )
    if recorded and event.distribution_id is not None:
        await store.ensure_basket(session, event.group_id, event.distribution_id, event.member_id)


def _subscription_method(event: SubscriptionConfirmed | SubscriptionAmended) -> str:
    return event.payment_method.value if event.payment_method else Method.CHEQUE.value


async def on_subscription_confirmed(session: AsyncSession, event: SubscriptionConfirmed) -> None:
    """The contract total is owed (R19). No declared payment: the coordinator enters the
    subscriber's cheques by hand, usually in one mass entry (R7)."""
    lines = _lines(event.lines)
    distribution_ids = [str(d) for d in event.distribution_ids]
    method = _subscription_method(event)
    await _owe(
        session,
        event,
        event.subscription_id,
        "subscription",
        event.total,
        lines,
        method,
        distribution_ids=distribution_ids,
    )


async def on_subscription_amended(session: AsyncSession, event: SubscriptionAmended) -> None:
    """Products added to a subscription: the added lines x remaining distributions are owed too,
    recorded as an amendment of the subscription (no declared payment, as for the subscription)."""
    lines = _lines(event.added_lines)
    await _owe(session, event, event.amendment_id, "amendment", event.added_total, lines, _subscription_method(event))


def consumers(service: Service) -> list[Consumer]:
    return [
        Consumer(
            "payments.orders",
            {
                GroupSettingsChanged: on_group_settings_changed,
                MemberJoined: on_member_joined,
                MemberUpdated: on_member_joined,
                OrderConfirmed: on_order_confirmed,
                OrderAmended: on_order_amended,
                OrderLineUndelivered: on_order_line_undelivered,
                SubscriptionConfirmed: on_subscription_confirmed,
                SubscriptionAmended: on_subscription_amended,
                OrderAwaitingPayment: card_usecases.on_order_awaiting_payment,
            },
            delivery_limit=service.settings.delivery_limit,
            batched=True,  # its handlers write rows only
        )
    ]
