"""Every consumed event, end to end: published on the real broker, consumed by the running
ledger, checked through the HTTP API and the events the ledger publishes."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

from cagette_contracts import (
    CardFeeCharged,
    GroupSettingsChanged,
    MemberJoined,
    OrderAmended,
    OrderLine,
    PaymentCancelled,
    PaymentDeclared,
    PaymentMethod,
    PaymentReceived,
    PaymentRefunded,
    Role,
    SubscriptionConfirmed,
    routing,
)
from cagette_runtime.consumer import PARKING_REASON_HEADER
from cagette_runtime.testing import EventSpy, drain_queue

from .conftest import World, count_rows


async def group_accounts(world: World) -> dict[str, int]:
    response = await world.client.get(f"/groups/{world.group_id}/accounts", headers=world.coordinator)
    assert response.status_code == 200, response.text
    return {a["type"]: a["balance"]["amount"] for a in response.json()}


async def test_order_confirmed_debits_member_and_credits_sales(world: World) -> None:
    member = uuid.uuid4()
    await world.deliver(world.order(member, 2350))
    balance = await world.balance(member)
    assert balance["balance"] == {"amount": -2350, "currency": "EUR"}
    assert balance["available"]["amount"] == -2350
    assert (await group_accounts(world)) == {"sales": 2350}


async def test_replayed_event_posts_once(world: World) -> None:
    member = uuid.uuid4()
    order = world.order(member, 1000)
    await world.deliver(order)
    await world.publish(order)  # same event id: the inbox drops it
    again = order.model_copy(update={"event_id": uuid.uuid4()})  # new id, same order: idempotency key
    await world.deliver(again)
    assert (await world.balance(member))["balance"]["amount"] == -1000
    assert await count_rows(world.service.database, "transactions", world.group_id) == 1


async def test_amendment_and_subscription_debit_more(world: World) -> None:
    member = uuid.uuid4()
    order = world.order(member, 1000)
    await world.deliver(order)
    added = world.money(250)
    await world.deliver(
        OrderAmended(
            group_id=world.group_id,
            order_id=order.order_id,
            amendment_id=uuid.uuid4(),
            member_id=member,
            payment_method=PaymentMethod.CHEQUE,
            added_lines=[OrderLine(product_name="eggs", quantity=Decimal(1), unit_price=added, line_total=added)],
            added_total=added,
            new_total=world.money(1250),
        )
    )
    week = world.money(1500)
    await world.deliver(
        SubscriptionConfirmed(
            group_id=world.group_id,
            subscription_id=uuid.uuid4(),
            contract_id=uuid.uuid4(),
            contract_name="Légumes",
            member_id=member,
            lines=[OrderLine(product_name="veg", quantity=Decimal(1), unit_price=week, line_total=week)],
            distribution_count=10,
            total=world.money(15000),
        )
    )
    assert (await world.balance(member))["balance"]["amount"] == -(1000 + 250 + 15000)
    assert (await group_accounts(world))["sales"] == 16250


def declared(
    world: World,
    member: uuid.UUID,
    cents: int,
    method: PaymentMethod = PaymentMethod.CHEQUE,
    payment_id: uuid.UUID | None = None,
) -> PaymentDeclared:
    return world.payment(
        PaymentDeclared, member, cents, method, payment_id=payment_id or uuid.uuid4(), reference="RF18 5390 0754 7034"
    )


def received(
    world: World, member: uuid.UUID, cents: int, payment_id: uuid.UUID, method: PaymentMethod = PaymentMethod.CHEQUE
) -> PaymentReceived:
    return world.payment(PaymentReceived, member, cents, method, payment_id=payment_id, label="cheque 0012")


async def test_declared_payment_is_pending_then_posted_with_corrected_amount(world: World) -> None:
    member = uuid.uuid4()
    await world.deliver(world.order(member, 3000))
    declaration = declared(world, member, 3000)
    await world.deliver(declaration)
    balance = await world.balance(member)
    assert (balance["balance"]["amount"], balance["pending"]["amount"], balance["available"]["amount"]) == (
        -3000,
        3000,
        -3000,
    )
    statement = (
        await world.client.get(f"/groups/{world.group_id}/members/{member}/statement", headers=world.member(member))
    ).json()
    assert [(e["status"], e["amount"]["amount"], e["balance_after"]) for e in statement["entries"]][0] == (
        "pending",
        3000,
        None,
    )

    await world.deliver(received(world, member, 2800, declaration.payment_id))  # corrected at validation
    balance = await world.balance(member)
    assert (balance["balance"]["amount"], balance["pending"]["amount"]) == (-200, 0)
    statement = (
        await world.client.get(f"/groups/{world.group_id}/members/{member}/statement", headers=world.member(member))
    ).json()
    assert [
        (e["status"], e["kind"], e["amount"]["amount"], e["balance_after"]["amount"]) for e in statement["entries"]
    ] == [("posted", "payment", 2800, -200), ("posted", "order", -3000, -3000)]
    assert statement["entries"][0]["payment_id"] == str(declaration.payment_id)
    assert (await group_accounts(world))["cheques"] == -2800


async def test_received_method_picks_the_clearing_account(world: World) -> None:
    member = uuid.uuid4()
    for method, cents in [
        (PaymentMethod.CASH, 100),
        (PaymentMethod.TRANSFER, 200),
        (PaymentMethod.CARD, 300),
        (PaymentMethod.CHEQUE, 400),
    ]:
        await world.deliver(received(world, member, cents, uuid.uuid4(), method))
    assert (await group_accounts(world)) == {"cash": -100, "transfers": -200, "card_clearing": -300, "cheques": -400}
    assert (await world.balance(member))["balance"]["amount"] == 1000


async def test_cancelled_payment_is_voided_and_late_declaration_ignored(world: World) -> None:
    member = uuid.uuid4()
    declaration = declared(world, member, 1500, PaymentMethod.TRANSFER)
    await world.deliver(declaration)
    assert (await world.balance(member))["pending"]["amount"] == 1500
    await world.deliver(
        world.payment(
            PaymentCancelled,
            member,
            1500,
            PaymentMethod.TRANSFER,
            payment_id=declaration.payment_id,
            reason="never came",
        )
    )
    assert (await world.balance(member))["pending"]["amount"] == 0
    # A cancellation that overtakes its declaration: the declaration shows nothing afterwards.
    other = declared(world, member, 700)
    await world.deliver(world.payment(PaymentCancelled, member, 700, PaymentMethod.CHEQUE, payment_id=other.payment_id))
    await world.deliver(other)
    balance = await world.balance(member)
    assert (balance["balance"]["amount"], balance["pending"]["amount"]) == (0, 0)


async def test_refund_and_card_fee(world: World) -> None:
    member = uuid.uuid4()
    payment_id = uuid.uuid4()
    await world.deliver(received(world, member, 5000, payment_id, PaymentMethod.CARD))
    await world.deliver(
        CardFeeCharged(
            group_id=world.group_id,
            payment_id=payment_id,
            member_id=member,
            amount=world.money(90),
            provider_payment_id="pi_123",
        )
    )
    await world.deliver(
        world.payment(PaymentRefunded, member, 1200, PaymentMethod.CARD, payment_id=payment_id, refund_id=uuid.uuid4())
    )
    assert (await world.balance(member))["balance"]["amount"] == 3800
    assert (await group_accounts(world)) == {"card_clearing": -5000 + 90 + 1200, "card_fees": -90}


async def test_member_joined_opens_a_zero_account(world: World) -> None:
    member = uuid.uuid4()
    await world.deliver(
        MemberJoined(group_id=world.group_id, member_id=member, role=Role.MEMBER, name="Ana", email="ana@example.org")
    )
    response = await world.client.get(f"/groups/{world.group_id}/balances", headers=world.coordinator)
    assert [line["member_id"] for line in response.json()["balanced"]] == [str(member)]


async def test_events_published_and_zero_crossings_only_when_crossing(world: World) -> None:
    member = uuid.uuid4()
    async with EventSpy(world.service.settings.amqp_url, "ledger.#") as spy:
        first = world.order(member, 1000)
        await world.deliver(first)
        await world.deliver(world.order(member, 500))  # still negative: no second went_negative
        await world.deliver(received(world, member, 2000, uuid.uuid4()))  # back to +500
        await spy.wait_for(routing.TRANSACTION_POSTED, 3, group_id=str(world.group_id))
        await spy.wait_for(routing.BALANCE_CHANGED, 3, group_id=str(world.group_id))
        await spy.wait_for(routing.BALANCE_BACK_TO_NON_NEGATIVE, 1, group_id=str(world.group_id))
        posted = spy.matching(routing.TRANSACTION_POSTED, group_id=str(world.group_id))
        assert posted[0].body["idempotency_key"] == f"order:{first.order_id}:confirmed"
        member_lines = [p for p in posted[0].body["postings"] if p["member_id"] == str(member)]
        assert member_lines[0]["balance_after"] == {"amount": -1000, "currency": "EUR"}
        changed = [
            m.body["balance"]["amount"] for m in spy.matching(routing.BALANCE_CHANGED, group_id=str(world.group_id))
        ]
        assert changed == [-1000, -1500, 500]
        assert len(spy.matching(routing.BALANCE_WENT_NEGATIVE, group_id=str(world.group_id))) == 1
        assert posted[0].body["correlation_id"] == first.correlation_id


# Reasons of the messages taken from the parking queue so far, by message id: a message taken while
# looking for another (parked by an earlier test, or in another order) is kept, not lost.
_parked: dict[str, str] = {}


async def park_reason(world: World, event_id: uuid.UUID, timeout: float = 25.0) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while str(event_id) not in _parked and asyncio.get_running_loop().time() < deadline:
        for message in await drain_queue(world.service.settings.amqp_url, "ledger.postings.parking", 100, timeout=1):
            _parked[str(message.message_id)] = str(message.headers[PARKING_REASON_HEADER])
    if str(event_id) not in _parked:
        raise AssertionError(f"event {event_id} was not parked")
    return _parked[str(event_id)]


async def test_wrong_currency_is_parked_and_changes_nothing(world: World) -> None:
    member = uuid.uuid4()
    await world.deliver(world.order(member, 1000))
    world.currency = "CHF"
    bad = world.order(member, 999)
    world.currency = "EUR"
    await world.publish(bad)
    assert "keeps its accounts in EUR, not CHF" in await park_reason(world, bad.event_id)
    assert (await world.balance(member))["balance"]["amount"] == -1000


async def test_received_without_actual_method_is_parked(world: World) -> None:
    member = uuid.uuid4()
    bad = received(world, member, 1000, uuid.uuid4(), PaymentMethod.ON_THE_SPOT)
    await world.publish(bad)
    assert "needs the actual method" in await park_reason(world, bad.event_id)
    assert await count_rows(world.service.database, "transactions", world.group_id) == 0


async def test_cancelling_a_received_payment_is_parked(world: World) -> None:
    member = uuid.uuid4()
    payment_id = uuid.uuid4()
    await world.deliver(received(world, member, 1000, payment_id))
    bad = world.payment(PaymentCancelled, member, 1000, PaymentMethod.CHEQUE, payment_id=payment_id)
    await world.publish(bad)
    assert "already received" in await park_reason(world, bad.event_id)
    assert (await world.balance(member))["balance"]["amount"] == 1000


async def test_currency_change_of_a_group_with_accounts_is_parked(world: World) -> None:
    await world.deliver(world.order(uuid.uuid4(), 100))
    change = GroupSettingsChanged(group_id=world.group_id, name="x", currency="CHF", payments_enabled=True)
    await world.publish(change)
    assert "changing its currency" in await park_reason(world, change.event_id)


async def test_malformed_message_is_parked(world: World) -> None:
    body = json.loads(world.order(uuid.uuid4(), 100).model_dump_json())
    body["total"] = {"amount": 1.5, "currency": "EUR"}
    message_id = uuid.uuid4()
    await world.service.broker.publish(
        json.dumps(body).encode(),
        exchange="cagette.events",
        routing_key=routing.ORDER_CONFIRMED,
        message_id=str(message_id),
    )
    assert "not a valid event" in await park_reason(world, message_id)


async def test_batches_commit_many_messages_and_a_bad_one_costs_nothing(world: World) -> None:
    import asyncio

    batcher = world.service.batchers[0]
    fallbacks = batcher.fallbacks
    members = [uuid.uuid4() for _ in range(5)]
    orders = [world.order(members[i % 5], 100 + i) for i in range(60)]
    world.currency = "CHF"
    bad = world.order(members[0], 5)
    world.currency = "EUR"
    await asyncio.gather(
        *(world.publish(o) for o in orders[:30]), world.publish(bad), *(world.publish(o) for o in orders[30:])
    )
    from .conftest import wait_processed

    for order in orders:
        await wait_processed(world.service.database, order)
    assert "not CHF" in await park_reason(world, bad.event_id)
    assert batcher.largest > 1 and batcher.fallbacks > fallbacks
    for i, member in enumerate(members):
        expected = -sum(100 + j for j in range(60) if j % 5 == i)
        assert (await world.balance(member))["balance"]["amount"] == expected
    assert await count_rows(world.service.database, "transactions", world.group_id) == 60


async def test_group_with_payments_off_tracks_no_order_money(world: World) -> None:
    await world.deliver(GroupSettingsChanged(group_id=world.group_id, name="x", currency="EUR", payments_enabled=False))
    member = uuid.uuid4()
    await world.deliver(world.order(member, 1000))
    assert await count_rows(world.service.database, "transactions", world.group_id) == 0
    await world.settings_changed()  # payments on again (a newer settings event)
    await world.deliver(world.order(member, 1000))
    assert (await world.balance(member))["balance"]["amount"] == -1000


async def test_older_settings_arriving_late_are_ignored(world: World) -> None:
    from datetime import timedelta

    await world.deliver(world.order(uuid.uuid4(), 100))
    stale = GroupSettingsChanged(
        group_id=world.group_id,
        name="x",
        currency="CHF",
        payments_enabled=False,
        occurred_at=GroupSettingsChanged.model_fields["occurred_at"].default_factory() - timedelta(days=1),
    )
    await world.deliver(stale)  # processed (not parked), and changes nothing
    await world.deliver(world.order(uuid.uuid4(), 100))
    assert await count_rows(world.service.database, "transactions", world.group_id) == 2


async def test_a_json_labelled_body_that_is_not_json_is_parked_by_the_batched_consumer(world: World) -> None:
    """Content type application/json, body not JSON: the batched consumer decodes raw bodies like
    every consumer, so the message is parked with its reason (not left unacknowledged, where 64 of
    them would stall every posting) and the messages after it are posted."""
    assert world.service.batchers, "the ledger consumes in batches here"
    poison_ids = [uuid.uuid4() for _ in range(3)]
    for message_id in poison_ids:
        await world.service.broker.publish(
            b"{this is not json",
            exchange="cagette.events",
            routing_key=routing.ORDER_CONFIRMED,
            message_id=str(message_id),
            content_type="application/json",
            persist=True,
        )
    member = uuid.uuid4()
    await world.deliver(world.order(member, 700))
    for message_id in poison_ids:
        assert "body is not JSON" in await park_reason(world, message_id)
    assert (await world.balance(member))["balance"]["amount"] == -700


async def test_card_dispute_funds_reach_the_ledger_through_the_registry(world: World) -> None:
    """The queue binds every event class the registry handles (the funds of a dispute were once
    handled but not bound, so never delivered)."""
    from cagette_ledger.handlers import POSTINGS, POSTINGS_QUEUE

    [consumer] = [c for c in world.service.consumers if c.name == POSTINGS_QUEUE]
    assert consumer.handlers is POSTINGS
    assert routing.CARD_DISPUTE_FUNDS_WITHDRAWN in consumer.queue.routing_keys
    assert routing.CARD_DISPUTE_FUNDS_REINSTATED in consumer.queue.routing_keys
    assert set(consumer.queue.routing_keys) == {cls.routing_key() for cls in POSTINGS.event_classes}
