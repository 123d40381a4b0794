"""Variable orders: baskets per member and distribution, validated with a payment method (R8),
priced once per line (B1), add-only with payments on (R6), free with payments off (R1), locked
once the basket is validated (R20), refused after the cut-off."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from cagette_contracts import BasketUnvalidated, BasketValidated, Money, Role, line_amount

from .conftest import Group, OrdersEnv, Unchanged, bearer, deliver, make_group, outbox_rows


async def test_cheque_order_is_confirmed_at_once_with_lines_rounded_once(group: Group) -> None:
    member_id, member = await group.join()
    response = await group.order(member, [(group.bread, "2"), (group.cheese, "0.375")], method="cheque")
    assert response.status_code == 201, response.text
    order = response.json()
    cheese = line_amount(Decimal("0.375"), Money(amount=1999, currency="EUR"), Decimal("0.02"))
    assert cheese.amount == 765  # 0.375 x 19.99 x 1.02 = 7.6461... -> 7.65
    assert order["status"] == "confirmed"
    assert [line["line_total"]["amount"] for line in order["lines"]] == [700, 765]
    assert order["total"] == {"amount": 1465, "currency": "EUR"}
    events = await outbox_rows(group.env, group.group_id)
    confirmed = [e for e in events if e["routing_key"] == "orders.order.confirmed"]
    assert len(confirmed) == 1
    assert confirmed[0]["total"] == {"amount": 1465, "currency": "EUR"}
    assert confirmed[0]["payment_method"] == "cheque"
    assert confirmed[0]["distribution_id"] == group.distribution["distribution_id"]
    assert confirmed[0]["member_id"] == str(member_id)
    await group.env.spy.wait_for("orders.order.confirmed", order_id=order["order_id"])


async def test_the_order_answered_is_the_order_stored(group: Group) -> None:
    # The answer is built from what was inserted, not read back: it must be what a read gives.
    _, member = await group.join()
    response = await group.order(member, [(group.bread, "2"), (group.cheese, "0.500")], method="cheque")
    assert response.status_code == 201, response.text
    placed = response.json()
    stored = await group.client.get(group.url(f"/orders/{placed['order_id']}"), headers=member)
    assert stored.status_code == 200, stored.text
    assert placed == stored.json()
    assert [line["line_number"] for line in placed["lines"]] == [1, 2]


async def test_each_bad_order_is_refused_changing_nothing(group: Group) -> None:
    env = group.env
    member_id, member = await group.join()
    other = await make_group(env)
    contract = await group.new_catalog("AMAP", "subscription", [{"name": "Veg box", "unit_price": 1500}])
    box = contract["products"][0]["product_id"]
    closed = await group.new_distribution(
        opened=timedelta(days=2), starts_in=timedelta(hours=3), closes_before=timedelta(hours=4)
    )
    not_yet = await group.new_distribution(opened=-timedelta(days=1))
    stranger = bearer(env.settings, uuid.uuid4(), {group.group_id: Role.MEMBER})  # a token, but not a registered member
    outsider = bearer(env.settings, member_id, {other.group_id: Role.MEMBER})
    bread = group.bread
    cases = [
        ("unknown product", dict(lines=[(str(uuid.uuid4()), "1")]), member, 422, "unknown product"),
        ("another group's product", dict(lines=[(other.bread, "1")]), member, 422, "unknown product"),
        ("a contract's product", dict(lines=[(box, "1")]), member, 422, "not sold for this distribution"),
        ("zero quantity", dict(lines=[(bread, "0")]), member, 422, "must be positive"),
        ("negative quantity", dict(lines=[(bread, "-2")]), member, 422, "must be positive"),
        ("fraction of a piece", dict(lines=[(bread, "1.5")]), member, 422, "whole number"),
        ("same product twice", dict(lines=[(bread, "1"), (bread, "2")]), member, 422, "listed twice"),
        ("no line", dict(lines=[]), member, 422, "request is not valid"),
        (
            "closed distribution",
            dict(lines=[(bread, "1")], distribution_id=closed["distribution_id"]),
            member,
            409,
            "closed",
        ),
        (
            "not open yet",
            dict(lines=[(bread, "1")], distribution_id=not_yet["distribution_id"]),
            member,
            409,
            "open at",
        ),
        (
            "another group's distribution",
            dict(lines=[(bread, "1")], distribution_id=other.distribution["distribution_id"]),
            member,
            404,
            "no distribution",
        ),
        ("method not offered", dict(lines=[(bread, "1")], method="money_pot"), member, 422, "does not offer money_pot"),
        ("no method", dict(lines=[(bread, "1")], method=None), member, 422, "R8"),
        ("unknown method", dict(lines=[(bread, "1")], method="bitcoin"), member, 422, "request is not valid"),
        ("not a registered member", dict(lines=[(bread, "1")]), stranger, 403, "not a registered member"),
        ("member of another group", dict(lines=[(bread, "1")]), outsider, 403, "not a member"),
    ]
    async with Unchanged(env, group.group_id):
        for name, kwargs, headers, code, reason in cases:
            response = await group.order(headers, **kwargs)
            assert response.status_code == code, (name, response.text)
            assert reason in response.json()["detail"], (name, response.json())
        assert (
            await group.client.post(
                group.url("/orders"),
                json={
                    "distribution_id": group.distribution["distribution_id"],
                    "lines": [{"product_id": bread, "quantity": 1}],
                },
            )
        ).status_code == 401


async def test_orders_after_the_group_cut_off_are_refused(group: Group) -> None:
    _, member = await group.join()
    soon = await group.new_distribution(starts_in=timedelta(hours=30), closes_before=timedelta(minutes=10))
    assert (await group.settings(order_cutoff_hours=48)).status_code == 200
    async with Unchanged(group.env, group.group_id):
        response = await group.order(member, [(group.bread, "1")], distribution_id=soon["distribution_id"])
        assert response.status_code == 409 and "cut-off" in response.json()["detail"]
    assert (await group.settings(order_cutoff_hours=24)).status_code == 200
    assert (await group.order(member, [(group.bread, "1")], distribution_id=soon["distribution_id"])).status_code == 201


async def test_one_basket_per_member_and_distribution(group: Group) -> None:
    _, member = await group.join()
    first = await group.order(member, [(group.bread, "1")])
    assert first.status_code == 201
    async with Unchanged(group.env, group.group_id):
        again = await group.order(member, [(group.cheese, "1")])
        assert again.status_code == 409 and first.json()["order_id"] in again.json()["detail"]


@pytest.mark.parametrize("method", ["cash", "transfer", "on_the_spot"])
async def test_manual_methods_confirm_at_once(group: Group, method: str) -> None:
    _, member = await group.join()
    response = await group.order(member, [(group.bread, "1")], method=method)
    assert response.status_code == 201 and response.json()["status"] == "confirmed"
    confirmed = [
        e for e in await outbox_rows(group.env, group.group_id) if e["routing_key"] == "orders.order.confirmed"
    ]
    assert [e["payment_method"] for e in confirmed] == [method]


async def test_money_pot_with_negatives_allowed_confirms_without_asking_the_ledger(env: OrdersEnv) -> None:
    group = await make_group(env, payment_methods=["money_pot"], allow_negative_money_pot=True)
    _, member = await group.join()
    # No hold responder runs here: a hold request would fail with 503.
    response = await group.order(member, [(group.bread, "10")], method="money_pot")
    assert response.status_code == 201 and response.json()["status"] == "confirmed"
    assert [
        e["total"]["amount"]
        for e in await outbox_rows(env, group.group_id)
        if e["routing_key"] == "orders.order.confirmed"
    ] == [3500]


async def test_add_only_amendment_with_payments_on(group: Group) -> None:
    member_id, member = await group.join()
    order = (await group.order(member, [(group.bread, "2")])).json()
    url = group.url(f"/orders/{order['order_id']}")
    response = await group.change_basket(url, member, [(group.bread, "3"), (group.cheese, "0.5")])
    assert response.status_code == 200, response.text
    changed = response.json()
    # 1 more bread (350) + 0.5 kg cheese (0.5 x 1999 x 1.02 = 1019.49 -> 1019)
    assert changed["total"]["amount"] == 700 + 350 + 1019
    assert [a["status"] for a in changed["amendments"]] == ["confirmed"]
    amended = [e for e in await outbox_rows(group.env, group.group_id) if e["routing_key"] == "orders.order.amended"]
    assert len(amended) == 1
    event = amended[0]
    assert [
        (line["product_name"], line["quantity"], line["line_total"]["amount"]) for line in event["added_lines"]
    ] == [("Bread", "1", 350), ("Cheese", "0.5", 1019)]
    assert event["added_total"]["amount"] == 1369 and event["new_total"]["amount"] == 2069
    assert event["payment_method"] == "cheque" and event["member_id"] == str(member_id)
    await group.env.spy.wait_for("orders.order.amended", order_id=order["order_id"])

    _, someone = await group.join()
    async with Unchanged(group.env, group.group_id):
        lower = await group.change_basket(url, member, [(group.bread, "1"), (group.cheese, "0.5")])
        assert lower.status_code == 409 and "cannot lower from 3 to 1 Bread" in lower.json()["detail"]
        remove = await group.change_basket(url, member, [(group.bread, "5")])
        assert remove.status_code == 409 and "cannot remove Cheese" in remove.json()["detail"]
        same = await group.change_basket(url, member, [(group.bread, "3"), (group.cheese, "0.5")])
        assert same.status_code == 422 and "nothing to add" in same.json()["detail"]
        withdraw = await group.client.delete(url, headers=member)
        assert withdraw.status_code == 409 and "R6" in withdraw.json()["detail"]
        assert (await group.change_basket(url, someone, [(group.bread, "9")])).status_code == 403
        assert (await group.client.get(url, headers=someone)).status_code == 403
    assert (await group.client.get(url, headers=group.coordinator)).json()["total"]["amount"] == 2069


async def test_payments_off_free_edits_until_the_cut_off_and_no_money_events(env: OrdersEnv) -> None:
    group = await make_group(env, payments_enabled=False, payment_methods=[])
    _, member = await group.join()
    response = await group.order(member, [(group.bread, "4"), (group.cheese, "1")], method=None)
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "confirmed" and order["payment_method"] is None
    url = group.url(f"/orders/{order['order_id']}")
    lowered = await group.client.put(
        url, headers=member, json={"lines": [{"product_id": group.bread, "quantity": "1"}]}
    )
    assert lowered.status_code == 200, lowered.text
    assert lowered.json()["total"]["amount"] == 350 and len(lowered.json()["lines"]) == 1
    cancelled = await group.client.delete(url, headers=member)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    # After the cut-off, no more changes.
    again = (await group.order(member, [(group.bread, "1")], method=None)).json()
    assert (await group.settings(order_cutoff_hours=24 * 4)).status_code == 200
    async with Unchanged(env, group.group_id):
        late = await group.client.put(
            group.url(f"/orders/{again['order_id']}"),
            headers=member,
            json={"lines": [{"product_id": group.bread, "quantity": "2"}]},
        )
        assert late.status_code == 409 and "closed" in late.json()["detail"]
        assert (await group.client.delete(group.url(f"/orders/{again['order_id']}"), headers=member)).status_code == 409
    money = [
        e["routing_key"] for e in await outbox_rows(env, group.group_id) if e["routing_key"].startswith("orders.order")
    ]
    assert money == []  # R1: no money tracking at all


async def test_a_validated_basket_is_locked_until_unvalidated(group: Group) -> None:
    member_id, member = await group.join()
    order = (await group.order(member, [(group.bread, "1")])).json()
    distribution_id = uuid.UUID(group.distribution["distribution_id"])
    url = group.url(f"/orders/{order['order_id']}")
    await deliver(
        group.env,
        BasketValidated(
            group_id=group.group_id,
            distribution_id=distribution_id,
            member_id=member_id,
            validated_by=group.coordinator_id,
        ),
    )
    assert (await group.client.get(url, headers=member)).json()["locked"] is True
    async with Unchanged(group.env, group.group_id):
        for headers in (member, group.coordinator):
            response = await group.client.put(
                url, headers=headers, json={"lines": [{"product_id": group.bread, "quantity": "2"}]}
            )
            assert response.status_code == 409 and "locked" in response.json()["detail"]
    await deliver(
        group.env,
        BasketUnvalidated(
            group_id=group.group_id, distribution_id=distribution_id, member_id=member_id, unvalidated_by=uuid.uuid4()
        ),
    )
    response = await group.client.put(
        url, headers=member, json={"lines": [{"product_id": group.bread, "quantity": "2"}]}
    )
    assert response.status_code == 200 and response.json()["locked"] is False


async def test_members_list_their_own_orders_coordinators_all(group: Group) -> None:
    a_id, a = await group.join()
    b_id, b = await group.join()
    await group.order(a, [(group.bread, "1")])
    await group.order(b, [(group.bread, "2")])
    mine = (await group.client.get(group.url("/orders"), headers=a)).json()
    assert [o["member_id"] for o in mine] == [str(a_id)]
    assert (await group.client.get(group.url(f"/orders?member_id={b_id}"), headers=a)).status_code == 403
    everyone = (
        await group.client.get(
            group.url(f"/orders?distribution_id={group.distribution['distribution_id']}"), headers=group.coordinator
        )
    ).json()
    assert sorted(o["member_id"] for o in everyone) == sorted([str(a_id), str(b_id)])
    # Named, so the coordinator's list reads without ids.
    assert sorted(o["member_name"] for o in everyone) == sorted([f"M {a_id.hex[:6]}", f"M {b_id.hex[:6]}"])
    assert {o["member_email"] for o in everyone} == {f"{a_id.hex[:8]}@example.org", f"{b_id.hex[:8]}@example.org"}

    # One order per page, oldest first: the second page follows the first's X-Next-Cursor and
    # is the last; each page is one query for the orders whatever their number.
    first = await group.client.get(group.url("/orders"), params={"limit": 1}, headers=group.coordinator)
    cursor = first.headers["x-next-cursor"]
    second = await group.client.get(
        group.url("/orders"), params={"limit": 1, "cursor": cursor}, headers=group.coordinator
    )
    assert "x-next-cursor" not in second.headers
    paged = first.json() + second.json()
    assert [o["member_id"] for o in paged] == [str(a_id), str(b_id)]
    assert paged[0]["created_at"] <= paged[1]["created_at"]
    for bad in ({"limit": 0}, {"limit": 201}, {"cursor": "%%%"}, {"cursor": "WyJ4Il0"}):
        refused = await group.client.get(group.url("/orders"), params=bad, headers=group.coordinator)
        assert refused.status_code == 422, bad


async def test_turning_payments_off_freezes_orders_placed_with_payments_on(group: Group) -> None:
    _, member = await group.join()
    order = (await group.order(member, [(group.bread, "2")])).json()
    assert (await group.settings(payments_enabled=False)).status_code == 200
    url = group.url(f"/orders/{order['order_id']}")
    async with Unchanged(group.env, group.group_id):
        lowered = await group.client.put(
            url, headers=member, json={"lines": [{"product_id": group.bread, "quantity": "1"}]}
        )
        assert lowered.status_code == 409 and "turned them off" in lowered.json()["detail"]
        assert (await group.client.delete(url, headers=member)).status_code == 409
