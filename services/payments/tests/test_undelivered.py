"""R6 on the payments side: a product not delivered (orders.order.line_undelivered) lowers what
the basket owes, so a basket paid for what was delivered reads settled in the basket view and
the takings; one paid in full before reads overpaid by the credit the member keeps (R4)."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid4

from cagette_contracts import Money, OrderConfirmed, OrderLineUndelivered, PaymentMethod

from .conftest import Group, Payments, line
from .test_validation import basket_url, eur, pending_payment


def undelivered(order: OrderConfirmed, cents: int, *, removal_id: UUID | None = None) -> OrderLineUndelivered:
    return OrderLineUndelivered(
        group_id=order.group_id,
        order_id=order.order_id,
        removal_id=removal_id or uuid4(),
        member_id=order.member_id,
        distribution_id=order.distribution_id,
        payment_method=order.payment_method,
        line_number=2,
        product_name="Comté",
        unit="kg",
        quantity=Decimal("0.375"),
        quantity_left=Decimal(0),
        unit_price=Money(amount=1999, currency="EUR"),
        fee_rate=Decimal("0.02"),
        amount=Money(amount=cents, currency="EUR"),
        new_total=order.total - Money(amount=cents, currency="EUR"),
        reason="fromager malade",
        removed_by=uuid4(),
    )


async def basket(payments: Payments, group: Group, distribution: UUID, member: UUID) -> dict:
    response = await payments.client.get(basket_url(group, distribution, member), headers=payments.coordinator(group))
    assert response.status_code == 200, response.text
    found: dict = response.json()
    return found


async def test_the_basket_owes_less_and_a_cheque_for_the_rest_settles_it(payments: Payments) -> None:
    group = await payments.new_group()
    member, distribution = group.members[0], uuid4()
    order = await payments.order(
        group, member, distribution, PaymentMethod.CHEQUE, line("Pain", 350, "2"), line("Comté", 765)
    )
    removal = undelivered(order, 765)
    await payments.feed(removal)
    await payments.feed(removal.model_copy(update={"event_id": uuid4()}))  # the same removal again: once
    found = await basket(payments, group, distribution, member)
    assert found["ordered"] == eur(700) and found["due"] == eur(700)
    taken_off = [o for o in found["orders"] if o["kind"] == "undelivered"]
    assert len(taken_off) == 1 and taken_off[0]["amount"] == eur(-765)
    assert taken_off[0]["lines"][0]["reason"] == "fromager malade"
    # The cheque declared for 14.65 is handed over for the 7.00 delivered (corrected, R20).
    declared = await pending_payment(payments, group, member)
    headers = payments.coordinator(group)
    confirmed = await payments.client.post(
        f"/groups/{group.group_id}/payments/{declared['payment_id']}/confirm",
        json={"amount": eur(700)},
        headers=headers,
    )
    assert confirmed.status_code == 200, confirmed.text
    found = await basket(payments, group, distribution, member)
    assert found["standing"] == "settled" and found["difference"] == eur(0)
    takings = (
        await payments.client.get(f"/groups/{group.group_id}/distributions/{distribution}/takings", headers=headers)
    ).json()
    assert takings["not_settled"] == []
    assert takings["net_received"]["amount"] == eur(700)
    validated = await payments.client.post(basket_url(group, distribution, member, "validate"), headers=headers)
    assert validated.status_code == 200, validated.text


async def test_a_basket_paid_in_full_reads_overpaid_by_the_credit(payments: Payments) -> None:
    group = await payments.new_group()
    member, distribution = group.members[0], uuid4()
    headers = payments.coordinator(group)
    order = await payments.order(group, member, distribution, PaymentMethod.CASH, line("Pain", 700), line("Comté", 765))
    declared = await pending_payment(payments, group, member)
    confirmed = await payments.client.post(
        f"/groups/{group.group_id}/payments/{declared['payment_id']}/confirm", json={}, headers=headers
    )
    assert confirmed.status_code == 200, confirmed.text
    validated = await payments.client.post(basket_url(group, distribution, member, "validate"), headers=headers)
    assert validated.status_code == 200, validated.text
    # Found missing at the distribution, after the basket was validated: still recorded.
    await payments.feed(undelivered(order, 765))
    found = await basket(payments, group, distribution, member)
    assert found["state"] == "validated"
    assert found["standing"] == "overpaid" and found["overpaid"] == eur(765) and found["due"] == eur(700)
    takings = (
        await payments.client.get(f"/groups/{group.group_id}/distributions/{distribution}/takings", headers=headers)
    ).json()
    assert [(m["standing"], m["amount"]) for m in takings["not_settled"]] == [("overpaid", eur(765))]


async def test_a_money_pot_basket_lowers_the_pot_part(payments: Payments) -> None:
    group = await payments.new_group()
    member, distribution = group.members[0], uuid4()
    order = await payments.order(
        group, member, distribution, PaymentMethod.MONEY_POT, line("Pain", 700), line("Comté", 765)
    )
    await payments.feed(undelivered(order, 765))
    found = await basket(payments, group, distribution, member)
    assert found["paid_from_money_pot"] == eur(700) and found["due"] == eur(0) and found["standing"] == "settled"
