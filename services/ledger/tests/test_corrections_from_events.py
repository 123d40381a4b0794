"""Corrections that come as events: a product not delivered (R6, orders.order.line_undelivered)
credits the member against sales as a new posting with its words and reason; a received payment
recorded by mistake (payments.payment.reversed) is the reversal of its own transaction, with its
own words, not a refund."""

from __future__ import annotations

import uuid
from decimal import Decimal

from cagette_contracts import (
    OrderLineUndelivered,
    PaymentMethod,
    PaymentReceived,
    PaymentRefunded,
    PaymentReversed,
)

from .conftest import World, count_rows, wait_processed
from .test_flows import park_reason


def undelivered(
    world: World, member: uuid.UUID, order_id: uuid.UUID, cents: int, **extra: object
) -> OrderLineUndelivered:
    values: dict[str, object] = {
        "group_id": world.group_id,
        "order_id": order_id,
        "removal_id": uuid.uuid4(),
        "member_id": member,
        "payment_method": PaymentMethod.CHEQUE,
        "line_number": 2,
        "product_name": "Comté",
        "unit": "kg",
        "quantity": Decimal("0.375"),
        "quantity_left": Decimal(0),
        "unit_price": world.money(1999),
        "fee_rate": Decimal("0.02"),
        "amount": world.money(cents),
        "new_total": world.money(700),
        "reason": "fromager malade",
        "removed_by": uuid.uuid4(),
        **extra,
    }
    return OrderLineUndelivered.model_validate(values)


async def statement(world: World, member: uuid.UUID) -> list[dict]:
    response = await world.client.get(
        f"/groups/{world.group_id}/members/{member}/statement", headers=world.member(member)
    )
    assert response.status_code == 200, response.text
    entries: list[dict] = response.json()["entries"]
    return entries


async def test_an_undelivered_product_credits_the_member_once_in_words(world: World) -> None:
    member, order_id = uuid.uuid4(), uuid.uuid4()
    await world.deliver(world.order(member, 1465, order_id=order_id))
    removal = undelivered(world, member, order_id, 765)
    await world.deliver(removal)
    assert (await world.balance(member))["balance"]["amount"] == -700
    # The same removal again (redelivered, or republished with a new event id) posts nothing more.
    await world.deliver(removal.model_copy(update={"event_id": uuid.uuid4()}))
    assert (await world.balance(member))["balance"]["amount"] == -700
    assert await count_rows(world.service.database, "transactions", world.group_id) == 2
    entry = (await statement(world, member))[0]
    assert entry["kind"] == "correction" and entry["amount"]["amount"] == 765
    assert entry["description"] == "Produit non livré : Comté 0,375 kg (fromager malade)"
    assert entry["reason"] == "fromager malade" and entry["balance_after"]["amount"] == -700
    # The group's sales are lowered as much (double entry).
    accounts = (await world.client.get(f"/groups/{world.group_id}/accounts", headers=world.coordinator)).json()
    assert {a["type"]: a["balance"]["amount"] for a in accounts} == {"sales": 700}


async def test_an_undelivered_product_in_english_and_by_the_piece(world: World) -> None:
    await world.settings_changed(language="en")
    member, order_id = uuid.uuid4(), uuid.uuid4()
    await world.deliver(world.order(member, 700, order_id=order_id))
    await world.deliver(
        undelivered(
            world, member, order_id, 350, product_name="Bread", unit="piece", quantity=Decimal(1), reason="oven broke"
        )
    )
    entry = (await statement(world, member))[0]
    assert entry["description"] == "Not delivered: Bread x1 (oven broke)"
    assert (await world.balance(member))["balance"]["amount"] == -350


def reversal_of(
    world: World, member: uuid.UUID, cents: int, method: PaymentMethod, payment_id: uuid.UUID, reason: str
) -> PaymentReversed:
    """A coordinator's reversal of a payment recorded by mistake."""
    return world.payment(
        PaymentReversed,
        member,
        cents,
        method,
        payment_id=payment_id,
        reversal_id=uuid.uuid4(),
        reason=reason,
        recorded_by=uuid.uuid4(),
    )


async def test_a_payment_recorded_by_mistake_is_reversed_not_refunded(world: World) -> None:
    member, payment_id = uuid.uuid4(), uuid.uuid4()
    await world.deliver(world.order(member, 3000))
    await world.deliver(
        world.payment(PaymentReceived, member, 3000, PaymentMethod.CHEQUE, payment_id=payment_id, label="101")
    )
    assert (await world.balance(member))["balance"]["amount"] == 0
    reversed_ = reversal_of(world, member, 3000, PaymentMethod.CHEQUE, payment_id, "wrong member")
    await world.deliver(reversed_)
    await world.deliver(reversed_.model_copy(update={"event_id": uuid.uuid4()}))
    assert (await world.balance(member))["balance"]["amount"] == -3000
    entries = await statement(world, member)
    reversal, received = entries[0], entries[1]
    assert reversal["kind"] == "reversal" and reversal["amount"]["amount"] == -3000
    assert reversal["reverses_transaction_id"] == received["transaction_id"]
    assert received["reversed_by_transaction_id"] == reversal["transaction_id"]
    assert reversal["description"] == "Annulation d'un paiement enregistré par erreur (Chèque) : wrong member"
    assert reversal["reason"] == "wrong member"
    accounts = (await world.client.get(f"/groups/{world.group_id}/accounts", headers=world.coordinator)).json()
    assert {a["type"]: a["balance"]["amount"] for a in accounts}.get("cheques", 0) == 0  # no money moved


async def test_a_reversal_before_its_payment_waits_for_it(world: World) -> None:
    member, payment_id = uuid.uuid4(), uuid.uuid4()
    reversed_ = reversal_of(world, member, 500, PaymentMethod.CASH, payment_id, "typo")
    await world.publish(reversed_)
    await world.deliver(world.payment(PaymentReceived, member, 500, PaymentMethod.CASH, payment_id=payment_id))
    await wait_processed(world.service.database, reversed_, timeout=30)
    assert (await world.balance(member))["balance"]["amount"] == 0
    assert (await statement(world, member))[0]["kind"] == "reversal"


async def test_an_old_reversal_as_a_refund_still_posts_with_its_words(world: World) -> None:
    """Events published before payments.payment.reversed existed: a refund pointing at the payment."""
    member, payment_id = uuid.uuid4(), uuid.uuid4()
    await world.deliver(
        world.payment(
            PaymentRefunded,
            member,
            200,
            PaymentMethod.CASH,
            payment_id=payment_id,
            refund_id=uuid.uuid4(),
            reverses_payment_id=payment_id,
        )
    )
    assert (await statement(world, member))[0]["description"] == "Annulation d'un paiement enregistré par erreur"


async def test_an_undelivered_credit_in_another_currency_is_parked(world: World) -> None:
    member, order_id = uuid.uuid4(), uuid.uuid4()
    bad = OrderLineUndelivered.model_validate(
        {
            **undelivered(world, member, order_id, 100).model_dump(),
            "amount": {"amount": 100, "currency": "CHF"},
            "new_total": {"amount": 0, "currency": "CHF"},
            "unit_price": {"amount": 1999, "currency": "CHF"},
        }
    )
    await world.publish(bad)
    assert "keeps its accounts in EUR, not CHF" in await park_reason(world, bad.event_id)
    assert (await world.balance(member))["balance"]["amount"] == 0
