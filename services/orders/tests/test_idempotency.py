"""Idempotency-Key on orders (runtime/idempotency.py): placing, changing and withdrawing orders
and subscribing need a key (428 without, nothing changed); a retry with the same key and body
gets the first answer and places nothing more; the same key with another body is a 409;
concurrent retries place one order."""

from __future__ import annotations

import asyncio
from typing import Any

from cagette_runtime.testing import WITHOUT_KEY

from .conftest import Group, Unchanged, count, outbox_rows
from .test_subscriptions import contract

NO_KEY = {WITHOUT_KEY: True}


def order_body(group: Group, quantity: str = "1") -> dict[str, Any]:
    return {
        "distribution_id": group.distribution["distribution_id"],
        "payment_method": "cheque",
        "lines": [{"product_id": group.bread, "quantity": quantity}],
    }


async def test_moving_money_without_a_key_is_428_and_changes_nothing(group: Group) -> None:
    _, member = await group.join()
    c = await contract(group, distributions=2)
    placed = await group.order(member, [(group.bread, "1")])
    order_url = group.url(f"/orders/{placed.json()['order_id']}")
    async with Unchanged(group.env, group.group_id):
        refusals = [
            await group.client.post(group.url("/orders"), json=order_body(group), headers=member, extensions=NO_KEY),
            await group.client.put(
                order_url, json={"lines": order_body(group, "3")["lines"]}, headers=member, extensions=NO_KEY
            ),
            await group.client.delete(order_url, headers=member, extensions=NO_KEY),
            await group.client.post(
                group.url(f"/contracts/{c['catalog_id']}/subscriptions"),
                json={"lines": [{"product_id": c["products"][0]["product_id"], "quantity": "1"}]},
                headers=member,
                extensions=NO_KEY,
            ),
        ]
    for refused in refusals:
        assert refused.status_code == 428, refused.text
        assert refused.json()["error"] == "idempotency_key_required"
        assert "Idempotency-Key" in refused.json()["detail"]


async def test_a_retry_with_the_same_key_gets_the_first_answer_and_places_one_order(group: Group) -> None:
    _, member = await group.join()
    headers = {**member, "Idempotency-Key": "basket-1"}
    first = await group.client.post(group.url("/orders"), json=order_body(group), headers=headers)
    assert first.status_code == 201, first.text
    again = await group.client.post(group.url("/orders"), json=order_body(group), headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert await count(group.env, "orders", group.group_id) == 1
    events = await outbox_rows(group.env, group.group_id)
    assert len([e for e in events if e["routing_key"] == "orders.order.confirmed"]) == 1

    other = await group.client.post(group.url("/orders"), json=order_body(group, "2"), headers=headers)
    assert other.status_code == 409 and "different request" in other.json()["detail"]
    assert await count(group.env, "orders", group.group_id) == 1


async def test_an_addition_retried_is_added_once(group: Group) -> None:
    _, member = await group.join()
    order = (await group.order(member, [(group.bread, "1")])).json()
    headers = {**member, "Idempotency-Key": "add-bread"}
    body = {"lines": [{"product_id": group.bread, "quantity": "3"}]}
    url = group.url(f"/orders/{order['order_id']}")
    first = await group.client.put(url, json=body, headers=headers)
    assert first.status_code == 200, first.text
    again = await group.client.put(url, json=body, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    amended = [e for e in await outbox_rows(group.env, group.group_id) if e["routing_key"] == "orders.order.amended"]
    assert len(amended) == 1


async def test_a_subscription_retried_is_made_once(group: Group) -> None:
    _, member = await group.join()
    c = await contract(group, distributions=2)
    body = {"payment_method": "cheque", "lines": [{"product_id": c["products"][0]["product_id"], "quantity": "1"}]}
    headers = {**member, "Idempotency-Key": "veg-box"}
    url = group.url(f"/contracts/{c['catalog_id']}/subscriptions")
    first = await group.client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await group.client.post(url, json=body, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["subscription_id"] == first.json()["subscription_id"]
    assert await count(group.env, "subscriptions", group.group_id) == 1


async def test_concurrent_retries_with_one_key_place_one_order(group: Group) -> None:
    _, member = await group.join()
    headers = {**member, "Idempotency-Key": "double-click"}
    answers = await asyncio.gather(
        *(group.client.post(group.url("/orders"), json=order_body(group), headers=headers) for _ in range(6))
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) <= {201, 409} and 201 in statuses, [a.text for a in answers]
    fresh = [a for a in answers if a.status_code == 201 and "Idempotent-Replayed" not in a.headers]
    assert len(fresh) == 1
    busy = [a for a in answers if a.status_code == 409]
    assert all(a.json()["error"] == "idempotency_key_in_progress" for a in busy)
    assert await count(group.env, "orders", group.group_id) == 1
    replay = await group.client.post(group.url("/orders"), json=order_body(group), headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["order_id"] == fresh[0].json()["order_id"]


async def test_two_members_may_use_the_same_key(group: Group) -> None:
    _, alice = await group.join()
    _, bob = await group.join()
    for member in (alice, bob):
        answer = await group.client.post(
            group.url("/orders"), json=order_body(group), headers={**member, "Idempotency-Key": "same"}
        )
        assert answer.status_code == 201 and "Idempotent-Replayed" not in answer.headers
    assert await count(group.env, "orders", group.group_id) == 2
