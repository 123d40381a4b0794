"""Helpers of the card payment tests: a group with card payments set up, what orders awaits by
card, the member's pay request, and signed webhooks posted over HTTP."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID, uuid4

import httpx
import stripe

from cagette_contracts import OrderAwaitingPayment, OrderLine, PaymentMethod
from cagette_runtime.testing import eventually

from .conftest import WEBHOOK_SECRET, Group, Payments, line, lines_total
from .stripe_standin import StripeStandIn, body_of


def standin(payments: Payments) -> StripeStandIn:
    assert payments.standin is not None
    return payments.standin


async def card_group(payments: Payments, *, account: str | None = None, members: int = 2) -> Group:
    group = await payments.new_group(members)
    if account:
        standin(payments).add_account(account)
    response = await payments.client.put(
        f"/groups/{group.group_id}/card-settings",
        json={"enabled": True, "stripe_account": account},
        headers=payments.coordinator(group),
    )
    assert response.status_code == 200, response.text
    return group


async def awaiting(
    payments: Payments,
    group: Group,
    member_id: UUID,
    *lines: OrderLine,
    order_id: UUID | None = None,
    amendment_id: UUID | None = None,
    distribution_id: UUID | None = None,
) -> OrderAwaitingPayment:
    lines = lines or (line("Cheese", 1250, "2"), line("Apples", 320, "1.5"))
    event = OrderAwaitingPayment(
        group_id=group.group_id,
        order_id=order_id or uuid4(),
        amendment_id=amendment_id,
        member_id=member_id,
        distribution_id=distribution_id or uuid4(),
        payment_method=PaymentMethod.CARD,
        lines=list(lines),
        amount=lines_total(list(lines)),
    )
    await payments.feed(event)
    return event


async def pay(
    payments: Payments,
    group: Group,
    member_id: UUID,
    order_id: UUID,
    amendment_id: UUID | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = {"amendment_id": str(amendment_id)} if amendment_id else None
    return await payments.client.post(
        f"/groups/{group.group_id}/orders/{order_id}/card-payment",
        json=body,
        headers=headers or payments.member(group, member_id),
    )


async def started(payments: Payments, group: Group, due: OrderAwaitingPayment) -> dict[str, Any]:
    response = await pay(payments, group, due.member_id, due.order_id, due.amendment_id)
    assert response.status_code == 201, response.text
    return response.json()


async def checkout_started(payments: Payments) -> tuple[Group, OrderAwaitingPayment, dict[str, Any]]:
    """A card group whose first member started paying an order by card: the group, what the
    order awaits, the card payment as answered (its checkout page open)."""
    group = await card_group(payments)
    due = await awaiting(payments, group, group.members[0])
    return group, due, await started(payments, group, due)


def sign(event: dict[str, Any], *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[str, str]:
    body = body_of(event)
    return body, stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=timestamp or int(time.time())
    )


async def webhook(
    payments: Payments,
    event: dict[str, Any],
    *,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
    header: str | None = None,
    body: str | None = None,
) -> httpx.Response:
    """POST the event to the running service over HTTP, signed with the library's helper."""
    signed_body, signature = sign(event, secret=secret, timestamp=timestamp)
    headers = {"Content-Type": "application/json"}
    if header != "":
        headers["Stripe-Signature"] = header or signature
    assert payments.web is not None
    return await payments.web.post("/webhooks/stripe", content=body or signed_body, headers=headers)


async def applied(payments: Payments, event: dict[str, Any], outcome: str = "applied") -> None:
    response = await webhook(payments, event)
    assert response.status_code == 200, response.text
    assert response.json().get("outcome") == outcome, response.json()


async def card_payment(payments: Payments, group: Group, payment_id: str) -> dict[str, Any]:
    response = await payments.client.get(
        f"/groups/{group.group_id}/card-payments/{payment_id}", headers=payments.coordinator(group)
    )
    assert response.status_code == 200, response.text
    return response.json()


async def outbox_for(payments: Payments, routing_key: str, payment_id: str) -> int:
    return await payments.scalar(
        "SELECT count(*) FROM outbox_messages WHERE routing_key = :k AND body::jsonb ->> 'payment_id' = :p",
        k=routing_key,
        p=payment_id,
    )


async def settle_background_jobs(payments: Payments) -> None:
    """Wait until the fee jobs of this test's payments are done, so no event from them lands in
    another test's outbox counts."""

    async def idle() -> bool:
        return await payments.scalar("SELECT count(*) FROM card_jobs WHERE done_at IS NULL") == 0

    await eventually(idle)
