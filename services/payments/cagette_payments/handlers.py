"""What payments does with the events it consumes (one queue for the orders events, so a group's
settings, members and orders are applied in the order orders published them).

Each handler runs in the consumer's transaction, after the event id was claimed in the inbox,
so a redelivered event has no second effect."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    GroupSettingsChanged,
    MemberJoined,
    MemberUpdated,
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


async def on_order_confirmed(session: AsyncSession, event: OrderConfirmed) -> None:
    await store.ensure_member(session, event.group_id, event.member_id)
    recorded = await store.insert_owed(
        session,
        {
            "item_id": event.order_id,
            "kind": "order",
            "group_id": event.group_id,
            "member_id": event.member_id,
            "distribution_id": event.distribution_id,
            "order_id": event.order_id,
            "payment_method": event.payment_method.value,
            "amount": event.total.amount,
            "currency": event.total.currency,
            "lines": _lines(event.lines),
            "event_id": event.event_id,
            "occurred_at": event.occurred_at,
        },
    )
    if not recorded:
        return
    if event.distribution_id is not None:
        await store.ensure_basket(session, event.group_id, event.distribution_id, event.member_id)
    await usecases.declare_for_order(
        session,
        group_id=event.group_id,
        member_id=event.member_id,
        method=Method.from_contract(event.payment_method),
        amount=event.total,
        source="order",
        item_id=event.order_id,
        order_id=event.order_id,
        amendment_id=None,
        distribution_id=event.distribution_id,
    )


async def on_order_amended(session: AsyncSession, event: OrderAmended) -> None:
    """A complementary payment (R6): its own declared payment and its own reference."""
    await store.ensure_member(session, event.group_id, event.member_id)
    recorded = await store.insert_owed(
        session,
        {
            "item_id": event.amendment_id,
            "kind": "amendment",
            "group_id": event.group_id,
            "member_id": event.member_id,
            "distribution_id": event.distribution_id,
            "order_id": event.order_id,
            "amendment_id": event.amendment_id,
            "payment_method": event.payment_method.value,
            "amount": event.added_total.amount,
            "currency": event.added_total.currency,
            "lines": _lines(event.added_lines),
            "event_id": event.event_id,
            "occurred_at": event.occurred_at,
        },
    )
    if not recorded:
        return
    if event.distribution_id is not None:
        await store.ensure_basket(session, event.group_id, event.distribution_id, event.member_id)
    await usecases.declare_for_order(
        session,
        group_id=event.group_id,
        member_id=event.member_id,
        method=Method.from_contract(event.payment_method),
        amount=event.added_total,
        source="amendment",
        item_id=event.amendment_id,
        order_id=event.order_id,
        amendment_id=event.amendment_id,
        distribution_id=event.distribution_id,
    )


async def on_order_line_undelivered(session: AsyncSession, event: OrderLineUndelivered) -> None:
    """A product not delivered (R6): the basket owes that much less, an owed item of its own
    (negative) beside the order, so the basket's figures and the takings say what is really due.
    Recorded even once the basket was validated (that is when it shows): it then reads overpaid
    by that much, a credit the member keeps on their account (R4) unless a coordinator refunds it."""
    await store.ensure_member(session, event.group_id, event.member_id)
    recorded = await store.insert_owed(
        session,
        {
            "item_id": event.removal_id,
            "kind": "undelivered",
            "group_id": event.group_id,
            "member_id": event.member_id,
            "distribution_id": event.distribution_id,
            "order_id": event.order_id,
            "payment_method": event.payment_method.value,
            "amount": -event.amount.amount,
            "currency": event.amount.currency,
            "lines": [
                {
                    "line_number": event.line_number,
                    "product_id": str(event.product_id) if event.product_id else None,
                    "product_name": event.product_name,
                    "unit": event.unit,
                    "quantity": str(event.quantity),
                    "unit_price": event.unit_price.model_dump(mode="json"),
                    "line_total": {"amount": -event.amount.amount, "currency": event.amount.currency},
                    "reason": event.reason,
                }
            ],
            "event_id": event.event_id,
            "occurred_at": event.occurred_at,
        },
    )
    if recorded and event.distribution_id is not None:
        await store.ensure_basket(session, event.group_id, event.distribution_id, event.member_id)


async def on_subscription_confirmed(session: AsyncSession, event: SubscriptionConfirmed) -> None:
    """The contract total is owed (R19). No declared payment: the coordinator enters the
    subscriber's cheques by hand, usually in one mass entry (R7)."""
    await store.ensure_member(session, event.group_id, event.member_id)
    await store.insert_owed(
        session,
        {
            "item_id": event.subscription_id,
            "kind": "subscription",
            "group_id": event.group_id,
            "member_id": event.member_id,
            "subscription_id": event.subscription_id,
            "contract_id": event.contract_id,
            "contract_name": event.contract_name,
            "distribution_ids": [str(d) for d in event.distribution_ids],
            "distribution_count": event.distribution_count,
            "payment_method": (event.payment_method.value if event.payment_method else Method.CHEQUE.value),
            "amount": event.total.amount,
            "currency": event.total.currency,
            "lines": _lines(event.lines),
            "event_id": event.event_id,
            "occurred_at": event.occurred_at,
        },
    )


async def on_subscription_amended(session: AsyncSession, event: SubscriptionAmended) -> None:
    """Products added to a subscription: the added lines x remaining distributions are owed too,
    recorded as an amendment of the subscription (no declared payment, as for the subscription)."""
    await store.ensure_member(session, event.group_id, event.member_id)
    await store.insert_owed(
        session,
        {
            "item_id": event.amendment_id,
            "kind": "amendment",
            "group_id": event.group_id,
            "member_id": event.member_id,
            "subscription_id": event.subscription_id,
            "contract_id": event.contract_id,
            "amendment_id": event.amendment_id,
            "distribution_count": event.distribution_count,
            "payment_method": (event.payment_method.value if event.payment_method else Method.CHEQUE.value),
            "amount": event.added_total.amount,
            "currency": event.added_total.currency,
            "lines": _lines(event.added_lines),
            "event_id": event.event_id,
            "occurred_at": event.occurred_at,
        },
    )


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
        )
    ]
