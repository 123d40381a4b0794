"""Subscription contracts (R19): the debt is price x quantity x number of distributions,
recorded when the member subscribes; changes with payments on are add-only (R6)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx

from .conftest import FakeLedgerHolds, Group, OrdersEnv, Unchanged, make_group, outbox_rows


async def contract(group: Group, distributions: int = 3, past: int = 0) -> dict[str, Any]:
    body = await group.new_catalog(
        "AMAP légumes",
        "subscription",
        [{"name": "Veg box", "unit_price": 1500}, {"name": "Eggs x6", "unit_price": 290, "fee_rate": "0.05"}],
    )
    for week in range(distributions):
        await group.new_distribution([body["catalog_id"]], starts_in=timedelta(days=7 * (week + 1)))
    for _ in range(past):  # a distribution whose orders already closed does not count
        await group.new_distribution(
            [body["catalog_id"]],
            starts_in=timedelta(hours=2),
            opened=timedelta(days=3),
            closes_before=timedelta(hours=3),
        )
    return body


async def subscribe(
    group: Group,
    headers: dict[str, str],
    c: dict[str, Any],
    lines: list[tuple[int, str]],
    method: str | None = "cheque",
):
    body: dict[str, Any] = {"lines": [{"product_id": c["products"][i]["product_id"], "quantity": q} for i, q in lines]}
    if method:
        body["payment_method"] = method
    return await group.client.post(group.url(f"/contracts/{c['catalog_id']}/subscriptions"), json=body, headers=headers)


async def test_subscribing_publishes_the_contract_total(group: Group) -> None:
    member_id, member = await group.join()
    c = await contract(group, distributions=4, past=1)
    response = await subscribe(group, member, c, [(0, "1"), (1, "2")])
    assert response.status_code == 201, response.text
    sub = response.json()
    eggs = 609  # 2 x 290 x 1.05 = 609
    assert sub["total"] == {"amount": (1500 + eggs) * 4, "currency": "EUR"}
    assert len(sub["distribution_ids"]) == 4
    (event,) = [
        e for e in await outbox_rows(group.env, group.group_id) if e["routing_key"] == "orders.subscription.confirmed"
    ]
    assert event["distribution_count"] == 4 and event["total"]["amount"] == (1500 + eggs) * 4
    assert event["member_id"] == str(member_id) and event["contract_name"] == "AMAP légumes"
    assert [line["line_total"]["amount"] for line in event["lines"]] == [1500, eggs]
    await group.env.spy.wait_for("orders.subscription.confirmed", subscription_id=sub["subscription_id"])


async def test_subscription_changes_are_add_only_with_payments_on(group: Group) -> None:
    _, member = await group.join()
    c = await contract(group, distributions=3)
    sub = (await subscribe(group, member, c, [(0, "1")])).json()
    url = group.url(f"/subscriptions/{sub['subscription_id']}")
    box, eggs = c["products"][0]["product_id"], c["products"][1]["product_id"]
    response = await group.client.put(
        url,
        headers=member,
        json={"lines": [{"product_id": box, "quantity": "1"}, {"product_id": eggs, "quantity": "1"}]},
    )
    assert response.status_code == 200, response.text
    added = 305  # 290 x 1.05 = 304.5 -> 305, for each of the 3 distributions
    assert response.json()["total"]["amount"] == 1500 * 3 + added * 3
    (event,) = [
        e for e in await outbox_rows(group.env, group.group_id) if e["routing_key"] == "orders.subscription.amended"
    ]
    assert event["added_total"]["amount"] == added * 3 and event["distribution_count"] == 3
    assert event["new_total"]["amount"] == 1500 * 3 + added * 3
    async with Unchanged(group.env, group.group_id):
        lower = await group.client.put(url, headers=member, json={"lines": [{"product_id": eggs, "quantity": "1"}]})
        assert lower.status_code == 409 and "cannot remove Veg box" in lower.json()["detail"]
        again = await subscribe(group, member, c, [(0, "2")])
        assert again.status_code == 409 and "already subscribed" in again.json()["detail"]


async def test_bad_subscriptions_are_refused(group: Group) -> None:
    _, member = await group.join()
    c = await contract(group)
    over = await contract(group, distributions=0, past=1)

    async def bread_from(contract_id: str | uuid.UUID) -> httpx.Response:
        """A subscription to bread, whatever the contract sells."""
        body = {"lines": [{"product_id": group.bread, "quantity": 1}]}
        return await group.client.post(group.url(f"/contracts/{contract_id}/subscriptions"), headers=member, json=body)

    async with Unchanged(group.env, group.group_id):
        cases = [
            (await subscribe(group, member, c, [(0, "0")]), 422, "must be positive"),
            (await subscribe(group, member, c, [(0, "1")], method="money_pot"), 422, "does not offer"),
            (await subscribe(group, member, over, [(0, "1")]), 422, "no distribution left"),
            (await bread_from(group.catalog["catalog_id"]), 422, "not a subscription contract"),
            (await bread_from(c["catalog_id"]), 422, "not sold"),
            (await bread_from(uuid.uuid4()), 404, "no contract"),
        ]
        for response, code, reason in cases:
            assert response.status_code == code, response.text
            assert reason in response.json()["detail"], response.json()


async def test_payments_off_subscriptions_carry_no_money_and_change_freely(env: OrdersEnv) -> None:
    group = await make_group(env, payments_enabled=False, payment_methods=[])
    _, member = await group.join()
    c = await contract(group, distributions=2)
    sub = (await subscribe(group, member, c, [(0, "2")], method=None)).json()
    assert sub["total"]["amount"] == 1500 * 2 * 2
    url = group.url(f"/subscriptions/{sub['subscription_id']}")
    response = await group.client.put(
        url, headers=member, json={"lines": [{"product_id": c["products"][1]["product_id"], "quantity": "1"}]}
    )
    assert response.status_code == 200 and response.json()["total"]["amount"] == 305 * 2
    assert [
        e for e in await outbox_rows(env, group.group_id) if e["routing_key"].startswith("orders.subscription")
    ] == []


async def test_money_pot_subscription_needs_a_hold(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await make_group(env, payment_methods=["money_pot"])
    member_id, member = await group.join()
    c = await contract(group, distributions=2)
    ledger.balances[(group.group_id, member_id)] = 2999
    async with Unchanged(env, group.group_id):
        refused = await subscribe(group, member, c, [(0, "1")], method="money_pot")
        assert refused.status_code == 409 and refused.json()["context"]["available"]["amount"] == 2999
    ledger.balances[(group.group_id, member_id)] = 3000
    assert (await subscribe(group, member, c, [(0, "1")], method="money_pot")).status_code == 201


async def test_members_list_their_own_subscriptions_and_coordinators_everyone(group: Group) -> None:
    alice_id, alice = await group.join()
    bruno_id, bruno = await group.join()
    c = await contract(group, distributions=2)
    mine = (await subscribe(group, alice, c, [(0, "1")])).json()
    theirs = (await subscribe(group, bruno, c, [(1, "2")])).json()
    listed = await group.client.get(group.url("/subscriptions"), headers=alice)
    assert listed.status_code == 200, listed.text
    assert [s["subscription_id"] for s in listed.json()] == [mine["subscription_id"]]
    assert listed.json()[0]["lines"][0]["product_name"] == "Veg box"
    # A member cannot read another member's list; a coordinator reads everyone's or one member's.
    assert (
        await group.client.get(group.url("/subscriptions"), headers=alice, params={"member_id": str(bruno_id)})
    ).status_code == 403
    everyone = await group.client.get(group.url("/subscriptions"), headers=group.coordinator)
    assert {s["member_id"] for s in everyone.json()} == {str(alice_id), str(bruno_id)}
    one = await group.client.get(
        group.url("/subscriptions"), headers=group.coordinator, params={"member_id": str(bruno_id)}
    )
    assert [s["subscription_id"] for s in one.json()] == [theirs["subscription_id"]]
    # In words: who and which contract, so a coordinator needs no id to read the list.
    [bruno_sub] = one.json()
    assert bruno_sub["member_name"] == f"M {bruno_id.hex[:6]}" and bruno_sub["contract_name"] == "AMAP légumes"
    assert bruno_sub["member_email"] == f"{bruno_id.hex[:8]}@example.org"
    other = await contract(group, distributions=1)
    to_contract = await group.client.get(
        group.url("/subscriptions"), headers=group.coordinator, params={"contract_id": other["catalog_id"]}
    )
    assert to_contract.status_code == 200 and to_contract.json() == []
    to_first = await group.client.get(
        group.url("/subscriptions"), headers=group.coordinator, params={"contract_id": c["catalog_id"]}
    )
    assert len(to_first.json()) == 2
