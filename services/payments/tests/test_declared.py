"""What is owed and the declared payments, from the orders events on the real broker."""

from __future__ import annotations

from uuid import uuid4

from cagette_contracts import PaymentMethod
from cagette_payments.domain import references

from .conftest import Payments, line


async def test_cheque_order_declares_a_pending_payment_with_an_rf_reference(payments: Payments, spy) -> None:
    group = await payments.new_group()
    distribution = uuid4()
    order = await payments.order(
        group, group.members[0], distribution, PaymentMethod.CHEQUE, line("Carrots", 350, "2"), line("Bread", 420)
    )

    [seen] = await spy.wait_for("payments.payment.declared", order_id=str(order.order_id))
    body = seen.body
    assert body["amount"] == {"amount": 1120, "currency": "EUR"}
    assert body["method"] == "cheque" and body["member_id"] == str(group.members[0])
    assert body["distribution_id"] == str(distribution) and body["group_id"] == str(group.group_id)
    assert references.is_valid_reference(body["reference"]) and len(body["reference"].split(" ")) == 4
    assert seen.raw.message_id == body["event_id"]

    [payment] = await payments.member_payments(group, group.members[0])
    assert payment["state"] == "declared" and payment["reference"] == body["reference"]
    assert payment["declared_amount"] == payment["amount"] == {"amount": 1120, "currency": "EUR"}
    assert [(t["from"], t["to"]) for t in payment["transitions"]] == [(None, "declared")]

    response = await payments.client.get(
        f"/groups/{group.group_id}/distributions/{distribution}/baskets/{group.members[0]}",
        headers=payments.coordinator(group),
    )
    basket = response.json()
    assert response.status_code == 200, basket
    assert basket["state"] == "to_validate" and basket["standing"] == "missing"
    assert (
        basket["ordered"]["amount"] == 1120
        and basket["pending"]["amount"] == 1120
        and basket["received"]["amount"] == 0
    )
    assert [line["product_name"] for line in basket["orders"][0]["lines"]] == ["Carrots", "Bread"]


async def test_amendment_gets_its_own_declared_payment_and_reference(payments: Payments, spy) -> None:
    group = await payments.new_group()
    distribution = uuid4()
    order = await payments.order(group, group.members[0], distribution, PaymentMethod.TRANSFER)
    amendment = await payments.amend(group, order, line("Eggs", 300, "2"))
    [first] = await spy.wait_for("payments.payment.declared", order_id=str(order.order_id), amendment_id=None)
    [second] = await spy.wait_for("payments.payment.declared", amendment_id=str(amendment.amendment_id))
    assert second.body["amount"]["amount"] == 600 and second.body["method"] == "transfer"
    assert first.body["reference"] != second.body["reference"]
    assert first.body["payment_id"] != second.body["payment_id"]
    basket = (
        await payments.client.get(
            f"/groups/{group.group_id}/distributions/{distribution}/baskets/{group.members[0]}",
            headers=payments.coordinator(group),
        )
    ).json()
    assert basket["ordered"]["amount"] == 700 + 600 and basket["pending"]["amount"] == 1300
    assert {o["kind"] for o in basket["orders"]} == {"order", "amendment"}


async def test_cash_and_on_the_spot_are_declared_without_reference_money_pot_is_not_declared(
    payments: Payments, spy
) -> None:
    group = await payments.new_group(3)
    distribution = uuid4()
    cash = await payments.order(group, group.members[0], distribution, PaymentMethod.CASH)
    spot = await payments.order(group, group.members[1], distribution, PaymentMethod.ON_THE_SPOT)
    pot = await payments.order(group, group.members[2], distribution, PaymentMethod.MONEY_POT)
    [c] = await spy.wait_for("payments.payment.declared", order_id=str(cash.order_id))
    [s] = await spy.wait_for("payments.payment.declared", order_id=str(spot.order_id))
    assert c.body["reference"] is None and s.body["reference"] is None and s.body["method"] == "on_the_spot"
    assert await payments.member_payments(group, group.members[2]) == []
    baskets = (
        await payments.client.get(
            f"/groups/{group.group_id}/distributions/{distribution}/baskets", headers=payments.coordinator(group)
        )
    ).json()["baskets"]
    pot_basket = next(b for b in baskets if b["member_id"] == str(pot.member_id))
    assert pot_basket["standing"] == "settled" and pot_basket["paid_from_money_pot"]["amount"] == 700
    assert len(baskets) == 3


async def test_redelivered_order_has_no_second_effect(payments: Payments) -> None:
    group = await payments.new_group()
    order = await payments.order(group, group.members[0], uuid4(), PaymentMethod.CHEQUE)
    await payments.publish(order)  # the same event id again
    again = order.model_copy(update={"event_id": uuid4()})  # same order, another event id
    await payments.feed(again)
    assert len(await payments.member_payments(group, group.members[0])) == 1
    assert await payments.scalar("SELECT count(*) FROM owed_items WHERE item_id = :o", o=order.order_id) == 1


async def test_group_with_payments_off_records_the_debt_but_declares_nothing(payments: Payments) -> None:
    group = await payments.new_group(payments_enabled=False)
    before = await payments.outbox_count()
    await payments.order(group, group.members[0], uuid4(), PaymentMethod.CHEQUE)
    assert await payments.member_payments(group, group.members[0]) == []
    assert await payments.outbox_count() == before


async def test_subscription_is_owed_in_full_and_declares_nothing(payments: Payments) -> None:
    group = await payments.new_group()
    contract = uuid4()
    sub = await payments.subscribe(group, group.members[0], contract, [line("Vegetable box", 1500)], 10)
    response = await payments.client.get(
        f"/groups/{group.group_id}/contracts/{contract}/subscriptions", headers=payments.coordinator(group)
    )
    [view] = response.json()["subscriptions"]
    assert view["subscription_id"] == str(sub.subscription_id)
    assert view["due"]["amount"] == 15000 and view["standing"] == "missing" and view["distribution_count"] == 10
    assert await payments.member_payments(group, group.members[0]) == []


async def test_subscription_amendment_adds_to_what_the_subscription_owes(payments: Payments) -> None:
    from cagette_contracts import Money, SubscriptionAmended

    group = await payments.new_group()
    contract = uuid4()
    sub = await payments.subscribe(group, group.members[0], contract, [line("Vegetable box", 1500)], 4)  # 60.00
    added = [line("Eggs", 300)]
    await payments.feed(
        SubscriptionAmended(
            group_id=group.group_id,
            subscription_id=sub.subscription_id,
            amendment_id=uuid4(),
            contract_id=contract,
            member_id=group.members[0],
            added_lines=added,
            distribution_count=3,
            added_total=Money(amount=900, currency="EUR"),
            new_total=Money(amount=6900, currency="EUR"),
        )
    )
    response = await payments.client.get(
        f"/groups/{group.group_id}/contracts/{contract}/subscriptions", headers=payments.coordinator(group)
    )
    [view] = response.json()["subscriptions"]
    assert view["due"]["amount"] == 6900 and view["missing"]["amount"] == 6900


async def test_member_updated_renames_the_member(payments: Payments) -> None:
    from cagette_contracts import MemberUpdated, Role

    group = await payments.new_group(1)
    member = group.members[0]
    distribution = uuid4()
    await payments.order(group, member, distribution, PaymentMethod.CASH)
    await payments.feed(
        MemberUpdated(
            group_id=group.group_id, member_id=member, role=Role.MEMBER, name="Alice Martin", email="alice@example.org"
        )
    )
    basket = (
        await payments.client.get(
            f"/groups/{group.group_id}/distributions/{distribution}/baskets/{member}",
            headers=payments.coordinator(group),
        )
    ).json()
    assert basket["member_name"] == "Alice Martin"
