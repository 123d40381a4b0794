"""Card orders (R21, B6): the order waits for its payment; the card-payment events from the real
broker confirm it, leave it to retry or abandon, and a late success is honoured and flagged."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from cagette_contracts import CardPaymentFailed, CardPaymentSucceeded, Money
from cagette_orders import handlers
from cagette_runtime.testing import drain_queue

from .conftest import Group, OrdersEnv, Unchanged, deliver, make_card_group, outbox_rows, publish

CardEventT = TypeVar("CardEventT", CardPaymentSucceeded, CardPaymentFailed)


async def card_group(env: OrdersEnv) -> Group:
    return await make_card_group(env)


async def bread_by_card(env: OrdersEnv) -> tuple[Group, dict[str, str], dict[str, Any]]:
    """A card group, a member of it and the member's order of one bread, awaiting its payment."""
    group = await card_group(env)
    _, member = await group.join()
    order = (await group.order(member, [(group.bread, "1")], method="card")).json()
    return group, member, order


def _card_event(
    kind: type[CardEventT],
    group: Group,
    order: dict[str, Any],
    amount: int | None,
    amendment_id: str | None,
    **extra: Any,
) -> CardEventT:
    """A payments card event about `order` (or its addition `amendment_id`), of `amount` (default: its total)."""
    return kind(
        group_id=group.group_id,
        payment_id=uuid.uuid4(),
        member_id=uuid.UUID(order["member_id"]),
        order_id=uuid.UUID(order["order_id"]),
        amendment_id=uuid.UUID(amendment_id) if amendment_id else None,
        amount=Money(amount=amount if amount is not None else order["total"]["amount"], currency="EUR"),
        **extra,
    )


def succeeded(
    group: Group, order: dict[str, Any], amount: int | None = None, amendment_id: str | None = None
) -> CardPaymentSucceeded:
    provider_payment_id = f"pi_{uuid.uuid4().hex[:12]}"
    return _card_event(
        CardPaymentSucceeded, group, order, amount, amendment_id, provider_payment_id=provider_payment_id
    )


def failed(
    group: Group, order: dict[str, Any], amendment_id: str | None = None, amount: int | None = None
) -> CardPaymentFailed:
    # No amount or 0: the order's total.
    return _card_event(CardPaymentFailed, group, order, amount or None, amendment_id, reason="card declined")


async def keys(group: Group) -> list[str]:
    return [
        e["routing_key"]
        for e in await outbox_rows(group.env, group.group_id)
        if e["routing_key"].startswith("orders.order.")
    ]


async def test_card_order_waits_then_the_card_success_confirms_it(env: OrdersEnv) -> None:
    group = await card_group(env)
    member_id, member = await group.join()
    response = await group.order(member, [(group.bread, "2"), (group.cheese, "0.25")], method="card")
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "awaiting_payment"
    waiting = [e for e in await outbox_rows(env, group.group_id) if e["routing_key"] == "orders.order.awaiting_payment"]
    assert len(waiting) == 1 and waiting[0]["amount"] == order["total"] and waiting[0]["amendment_id"] is None
    assert await keys(group) == ["orders.order.awaiting_payment"]  # nothing owed yet
    url = group.url(f"/orders/{order['order_id']}")
    async with Unchanged(env, group.group_id):
        blocked = await group.client.put(
            url, headers=member, json={"lines": [{"product_id": group.bread, "quantity": "3"}]}
        )
        assert blocked.status_code == 409 and "waits for its card payment" in blocked.json()["detail"]

    event = succeeded(group, order)
    await deliver(env, event)
    assert (await group.client.get(url, headers=member)).json()["status"] == "confirmed"
    seen = await env.spy.wait_for("orders.order.confirmed", order_id=order["order_id"])
    assert seen[0].body["payment_method"] == "card" and seen[0].body["total"] == order["total"]
    assert seen[0].body["member_id"] == str(member_id)
    # The same event delivered again has no second effect.
    await publish(env, event)
    await deliver(env, failed(group, order))  # a late failure never undoes the success
    assert (await group.client.get(url, headers=member)).json()["status"] == "confirmed"
    assert await keys(group) == ["orders.order.awaiting_payment", "orders.order.confirmed"]


async def test_failed_card_payment_leaves_the_basket_to_retry(env: OrdersEnv) -> None:
    group, member, order = await bread_by_card(env)
    url = group.url(f"/orders/{order['order_id']}")
    await deliver(env, failed(group, order))
    assert (await group.client.get(url, headers=member)).json()["status"] == "payment_failed"
    assert await keys(group) == ["orders.order.awaiting_payment"]
    # The member retries (through the payments service) and it succeeds.
    await deliver(env, succeeded(group, order))
    body = (await group.client.get(url, headers=member)).json()
    assert body["status"] == "confirmed" and body["flagged_reason"] is None
    assert await keys(group) == ["orders.order.awaiting_payment", "orders.order.confirmed"]


async def test_abandoned_basket_then_late_success_is_honoured_and_flagged(env: OrdersEnv) -> None:
    group, member, order = await bread_by_card(env)
    url = group.url(f"/orders/{order['order_id']}")
    await deliver(env, failed(group, order))
    abandoned = await group.client.delete(url, headers=member)
    assert abandoned.status_code == 200 and abandoned.json()["status"] == "abandoned"
    # Subscribers that saw it waiting learn that it ended.
    [told] = [e for e in await outbox_rows(env, group.group_id) if e["routing_key"] == "orders.order.abandoned"]
    assert told["order_id"] == order["order_id"] and told["member_id"] == order["member_id"]
    # The basket is free again: a new order for the same distribution is accepted.
    second = await group.order(member, [(group.cheese, "1")], method="card")
    assert second.status_code == 201
    await deliver(env, succeeded(group, order))
    body = (await group.client.get(url, headers=group.coordinator)).json()
    assert body["status"] == "confirmed"
    assert "abandoned" in body["flagged_reason"]
    confirmed = [e for e in await outbox_rows(env, group.group_id) if e["routing_key"] == "orders.order.confirmed"]
    assert [e["order_id"] for e in confirmed] == [order["order_id"]]


async def test_a_card_success_for_the_wrong_amount_is_parked(env: OrdersEnv) -> None:
    group, member, order = await bread_by_card(env)
    wrong = succeeded(group, order, amount=order["total"]["amount"] - 1)
    await publish(env, wrong)
    parked = await drain_queue(env.amqp_url, f"{handlers.QUEUE}.parking", expected=1)
    assert [m.message_id for m in parked] == [str(wrong.event_id)]
    assert "does not match" in parked[0].headers["x-parking-reason"]
    assert (await group.client.get(group.url(f"/orders/{order['order_id']}"), headers=member)).json()[
        "status"
    ] == "awaiting_payment"
    assert await keys(group) == ["orders.order.awaiting_payment"]


async def test_card_amendment_is_confirmed_by_its_own_payment(env: OrdersEnv) -> None:
    group, member, order = await bread_by_card(env)
    await deliver(env, succeeded(group, order))
    url = group.url(f"/orders/{order['order_id']}")
    response = await group.client.put(
        url, headers=member, json={"lines": [{"product_id": group.bread, "quantity": "3"}]}
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    (amendment,) = changed["amendments"]
    assert amendment["status"] == "awaiting_payment" and amendment["added_total"]["amount"] == 700
    assert changed["total"]["amount"] == 350  # not owed until paid
    waiting = [e for e in await outbox_rows(env, group.group_id) if e["routing_key"] == "orders.order.awaiting_payment"]
    assert waiting[-1]["amendment_id"] == amendment["amendment_id"] and waiting[-1]["amount"]["amount"] == 700
    async with Unchanged(env, group.group_id):
        busy = await group.client.put(
            url, headers=member, json={"lines": [{"product_id": group.bread, "quantity": "4"}]}
        )
        assert busy.status_code == 409 and "earlier addition" in busy.json()["detail"]
    await deliver(env, succeeded(group, order, amount=700, amendment_id=amendment["amendment_id"]))
    body = (await group.client.get(url, headers=member)).json()
    assert body["total"]["amount"] == 1050 and body["amendments"][0]["status"] == "confirmed"
    amended = await env.spy.wait_for("orders.order.amended", order_id=order["order_id"])
    assert amended[0].body["added_total"]["amount"] == 700 and amended[0].body["new_total"]["amount"] == 1050
    assert amended[0].body["amendment_id"] == amendment["amendment_id"]


async def test_a_failed_card_addition_is_dropped(env: OrdersEnv) -> None:
    group, member, order = await bread_by_card(env)
    await deliver(env, succeeded(group, order))
    url = group.url(f"/orders/{order['order_id']}")
    changed = (
        await group.client.put(url, headers=member, json={"lines": [{"product_id": group.bread, "quantity": "2"}]})
    ).json()
    amendment_id = changed["amendments"][0]["amendment_id"]
    await deliver(env, failed(group, order, amendment_id=amendment_id, amount=350))
    body = (await group.client.get(url, headers=member)).json()
    assert body["amendments"][0]["status"] == "abandoned" and body["total"]["amount"] == 350
    # The member may add again, from the confirmed basket.
    again = await group.client.put(url, headers=member, json={"lines": [{"product_id": group.bread, "quantity": "2"}]})
    assert again.status_code == 200 and again.json()["amendments"][-1]["added_total"]["amount"] == 350


async def test_card_orders_and_additions_below_the_provider_minimum_are_refused(env: OrdersEnv) -> None:
    """Stripe refuses to charge less than 0.50 EUR: the order is refused first, naming the minimum
    (the shared rule in contracts), instead of a member stuck with an order nobody can pay."""
    group = await card_group(env)
    _, member = await group.join()
    async with Unchanged(env, group.group_id):
        tiny = await group.order(member, [(group.cheese, "0.02")], method="card")  # 0.40 + 2 % = 0.41
        assert tiny.status_code == 422, tiny.text
        assert "at least 0.50 EUR" in tiny.json()["detail"]
    order = (await group.order(member, [(group.bread, "1")], method="card")).json()
    await deliver(env, succeeded(group, order))
    url = group.url(f"/orders/{order['order_id']}")
    async with Unchanged(env, group.group_id):
        small_addition = await group.client.put(
            url,
            headers=member,
            json={
                "lines": [
                    {"product_id": group.bread, "quantity": "1"},
                    {"product_id": group.cheese, "quantity": "0.02"},
                ]
            },
        )
        assert small_addition.status_code == 422 and "at least 0.50 EUR" in small_addition.json()["detail"]
