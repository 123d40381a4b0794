"""Money-pot holds (R13, B2): request/reply over the real broker, atomic decisions on the real
database, capture by OrderConfirmed, release and expiry."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aio_pika
from faststream.rabbit import RabbitBroker
from sqlalchemy import select

from cagette_contracts import (
    HoldDecision,
    HoldReleased,
    Money,
    OrderAmended,
    OrderLine,
    PaymentMethod,
    PaymentReceived,
    PlaceHold,
    ReleaseHold,
    SubscriptionAmended,
    SubscriptionConfirmed,
    routing,
)
from cagette_ledger import operations
from cagette_ledger.holds import answer_hold_request
from cagette_ledger.tables import holds

from .conftest import World


def hold(
    world: World,
    member: uuid.UUID,
    cents: int,
    *,
    order_id: uuid.UUID | None = None,
    expires_in: float = 600,
    hold_id: uuid.UUID | None = None,
) -> PlaceHold:
    return PlaceHold(
        hold_id=hold_id or uuid.uuid4(),
        group_id=world.group_id,
        member_id=member,
        order_id=order_id or uuid.uuid4(),
        amount=world.money(cents),
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
    )


async def credit(world: World, member: uuid.UUID, cents: int) -> None:
    await world.deliver(world.payment(PaymentReceived, member, cents, PaymentMethod.CASH))


async def request(world: World, body: str) -> bytes:
    """What the orders service does: FastStream 0.7 request/reply on the hold queue."""
    broker = RabbitBroker(world.service.settings.amqp_url)
    await broker.connect()
    try:
        reply = await broker.request(body, queue=routing.LEDGER_HOLD_REQUESTS_QUEUE, timeout=5)
        return reply.body
    finally:
        await broker.stop()


async def ask(world: World, place: PlaceHold) -> HoldDecision:
    return HoldDecision.model_validate_json(await request(world, place.model_dump_json()))


async def test_hold_granted_over_rabbitmq_then_captured_by_order(world: World) -> None:
    await world.settings_changed(allow_negative=False)
    member = uuid.uuid4()
    await credit(world, member, 2000)
    place = hold(world, member, 1500)
    decision = await ask(world, place)
    assert (decision.hold_id, decision.granted, decision.available) == (place.hold_id, True, world.money(500))
    balance = await world.balance(member)
    assert (balance["balance"]["amount"], balance["held"]["amount"], balance["available"]["amount"]) == (
        2000,
        1500,
        500,
    )

    await world.deliver(world.order(member, 1500, order_id=place.order_id, method=PaymentMethod.MONEY_POT))
    balance = await world.balance(member)
    assert (balance["balance"]["amount"], balance["held"]["amount"], balance["available"]["amount"]) == (500, 0, 500)


def lines(world: World, cents: int) -> list[OrderLine]:
    price = world.money(cents)
    return [OrderLine(product_name="Pain", quantity=Decimal(1), unit_price=price, line_total=price)]


async def test_holds_for_additions_and_subscriptions_are_captured_by_their_debits(world: World) -> None:
    """Orders holds an addition under its order id and a subscription (and its additions) under
    the subscription id; each debit turns its hold into the posted amount."""
    await world.settings_changed(allow_negative=False)
    member, order_id, subscription_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await credit(world, member, 10_000)

    async def held() -> tuple[int, int]:
        balance = await world.balance(member)
        return balance["balance"]["amount"], balance["held"]["amount"]

    assert (await ask(world, hold(world, member, 700, order_id=order_id))).granted
    await world.deliver(world.order(member, 700, order_id=order_id, method=PaymentMethod.MONEY_POT))
    assert await held() == (9300, 0)

    assert (await ask(world, hold(world, member, 350, order_id=order_id))).granted
    assert await held() == (9300, 350)
    await world.deliver(
        OrderAmended(
            group_id=world.group_id,
            order_id=order_id,
            amendment_id=uuid.uuid4(),
            member_id=member,
            payment_method=PaymentMethod.MONEY_POT,
            added_lines=lines(world, 350),
            added_total=world.money(350),
            new_total=world.money(1050),
        )
    )
    assert await held() == (8950, 0)

    assert (await ask(world, hold(world, member, 4500, order_id=subscription_id))).granted
    await world.deliver(
        SubscriptionConfirmed(
            group_id=world.group_id,
            subscription_id=subscription_id,
            contract_id=uuid.uuid4(),
            contract_name="Légumes",
            member_id=member,
            payment_method=PaymentMethod.MONEY_POT,
            lines=lines(world, 1500),
            distribution_count=3,
            total=world.money(4500),
        )
    )
    assert await held() == (4450, 0)

    assert (await ask(world, hold(world, member, 1000, order_id=subscription_id))).granted
    await world.deliver(
        SubscriptionAmended(
            group_id=world.group_id,
            subscription_id=subscription_id,
            amendment_id=uuid.uuid4(),
            contract_id=uuid.uuid4(),
            member_id=member,
            payment_method=PaymentMethod.MONEY_POT,
            added_lines=lines(world, 500),
            distribution_count=2,
            added_total=world.money(1000),
            new_total=world.money(5500),
        )
    )
    assert await held() == (3450, 0)


async def test_refused_with_available_and_same_hold_id_same_decision(world: World) -> None:
    await world.settings_changed(allow_negative=False)
    member = uuid.uuid4()
    await credit(world, member, 1000)
    first = await ask(world, hold(world, member, 800))
    assert first.granted
    place = hold(world, member, 300)
    refused = await ask(world, place)
    assert (refused.granted, refused.available) == (False, world.money(200))
    assert "refuses negative money pots" in (refused.reason or "")
    # More money arrives; the same hold id still gets the stored decision.
    await credit(world, member, 5000)
    again = await ask(world, place)
    assert again == refused
    # Reusing the id for a different hold is refused, never granted.
    reused = await ask(world, place.model_copy(update={"amount": world.money(1)}))
    assert not reused.granted and "different hold" in (reused.reason or "")


async def test_a_retry_with_the_same_hold_id_is_held_once(world: World) -> None:
    """orders asks again with the same hold id (its request timed out; the ledger granted it
    after all), a later deadline and expiry: the same grant, nothing more held."""
    await world.settings_changed(allow_negative=False)
    member = uuid.uuid4()
    await credit(world, member, 1000)
    place = hold(world, member, 700, expires_in=120)
    place = place.model_copy(update={"grant_before": datetime.now(UTC) + timedelta(seconds=5)})
    granted = await ask(world, place)
    assert granted.granted
    retry = place.model_copy(
        update={
            "grant_before": datetime.now(UTC) + timedelta(seconds=10),
            "expires_at": place.expires_at + timedelta(seconds=30),
        }
    )
    assert await ask(world, retry) == granted
    balance = await world.balance(member)
    assert (balance["held"]["amount"], balance["available"]["amount"]) == (700, 300)
    # Captured by its order: asked again, the same grant and nothing held.
    await world.deliver(world.order(member, 700, order_id=place.order_id, method=PaymentMethod.MONEY_POT))
    assert await ask(world, retry) == granted
    balance = await world.balance(member)
    assert (balance["balance"]["amount"], balance["held"]["amount"]) == (300, 0)


async def test_a_released_hold_asked_again_is_not_granted_again(world: World) -> None:
    await world.settings_changed(allow_negative=False)
    member = uuid.uuid4()
    await credit(world, member, 1000)
    place = hold(world, member, 700)
    assert (await ask(world, place)).granted
    async with world.service.database.transaction() as session:
        assert await operations.release_hold(session, place.hold_id, "its order was not recorded") == "released"
    again = await ask(world, place)
    assert not again.granted and "released" in (again.reason or "") and "new hold id" in (again.reason or "")
    assert (await world.balance(member))["held"]["amount"] == 0
    short = hold(world, member, 200, expires_in=0.5)
    assert (await ask(world, short)).granted
    await asyncio.sleep(0.6)
    late = await ask(world, short)
    assert not late.granted and "expired" in (late.reason or "")


async def test_a_request_past_its_deadline_is_not_granted(world: World) -> None:
    """A request that reaches the ledger at or after its grant_before (a ledger that restarted
    with it still queued, a consumer that took it late) is refused and records nothing."""
    await world.settings_changed(allow_negative=False)
    member = uuid.uuid4()
    await credit(world, member, 1000)
    late = hold(world, member, 400).model_copy(update={"grant_before": datetime.now(UTC) - timedelta(seconds=1)})
    reply = HoldDecision.model_validate(
        await answer_hold_request(world.service.database, late.model_dump_json().encode())
    )
    assert not reply.granted and "after its deadline" in (reply.reason or "")
    assert not reply.decided  # no verdict on the member's money: the asker may ask again
    async with world.service.database.sessionmaker() as session:
        assert await session.scalar(select(holds.c.hold_id).where(holds.c.hold_id == late.hold_id)) is None
    assert (await world.balance(member))["held"]["amount"] == 0
    # In time, the same request is granted; without grant_before (older callers) too.
    in_time = late.model_copy(update={"grant_before": datetime.now(UTC) + timedelta(seconds=5)})
    assert (await ask(world, in_time)).granted
    assert (await ask(world, hold(world, member, 100))).granted


async def test_a_request_nobody_took_by_its_deadline_is_dropped_by_the_broker(world: World) -> None:
    """Published with its AMQP expiration (as orders does) while no ledger consumes (stopped,
    restarting): the broker drops it at the deadline and no hold is ever granted for it."""
    await world.settings_changed(allow_negative=False)
    member = uuid.uuid4()
    await credit(world, member, 1000)
    place = hold(world, member, 400).model_copy(update={"grant_before": datetime.now(UTC) + timedelta(seconds=0.3)})
    (subscriber,) = [s for s in world.service.broker.subscribers if "hold-requests" in str(getattr(s, "queue", ""))]
    broker = RabbitBroker(world.service.settings.amqp_url)
    await broker.connect()
    await subscriber.stop()  # the ledger is down
    try:
        await broker.publish(
            place.model_dump_json(),
            queue=routing.LEDGER_HOLD_REQUESTS_QUEUE,
            expiration=timedelta(seconds=0.3),
        )
        await asyncio.sleep(0.8)
        connection = await aio_pika.connect(world.service.settings.amqp_url)
        async with connection:
            channel = await connection.channel()
            queued = await channel.declare_queue(routing.LEDGER_HOLD_REQUESTS_QUEUE, passive=True)
            assert queued.declaration_result.message_count == 0  # dropped by the broker, unread
    finally:
        await subscriber.start()  # the ledger is back
        await broker.stop()
    assert (await ask(world, hold(world, member, 100))).granted  # it answers again
    async with world.service.database.sessionmaker() as session:
        assert await session.scalar(select(holds.c.hold_id).where(holds.c.hold_id == place.hold_id)) is None
    assert (await world.balance(member))["held"]["amount"] == 100


async def test_pending_credits_never_count(world: World) -> None:
    from cagette_contracts import PaymentDeclared

    await world.settings_changed(allow_negative=False)
    member = uuid.uuid4()
    await world.deliver(world.payment(PaymentDeclared, member, 10000, PaymentMethod.CHEQUE))
    decision = await ask(world, hold(world, member, 1))
    assert (decision.granted, decision.available) == (False, world.money(0))


async def test_group_allowing_negative_pots_grants_anything(world: World) -> None:
    member = uuid.uuid4()
    decision = await ask(world, hold(world, member, 99999))
    assert (decision.granted, decision.available) == (True, world.money(-99999))


async def test_bad_requests_are_refused_or_reported(world: World) -> None:
    await world.settings_changed(allow_negative=False)
    member = uuid.uuid4()
    wrong_currency = hold(world, member, 100).model_copy(update={"amount": Money(amount=100, currency="CHF")})
    decision = await ask(world, wrong_currency)
    assert not decision.granted and "not CHF" in (decision.reason or "")
    zero = hold(world, member, 100).model_copy(update={"amount": world.money(0)})
    assert "positive" in ((await ask(world, zero)).reason or "")
    expired = await ask(world, hold(world, member, 100, expires_in=-1))
    assert not expired.granted and "expired" in (expired.reason or "")
    unknown_group = hold(world, member, 100).model_copy(update={"group_id": uuid.uuid4()})
    assert "knows no group" in ((await ask(world, unknown_group)).reason or "")
    naive = hold(world, member, 100)
    naive = naive.model_copy(update={"expires_at": naive.expires_at.replace(tzinfo=None)})
    assert "refuses negative" in ((await ask(world, naive)).reason or "")  # understood as UTC, then decided
    malformed = json.loads(await request(world, '{"hold_id": "nope"}'))
    assert malformed["error"] == "malformed"
    balance = await world.balance(member)
    assert balance["held"]["amount"] == 0


async def test_expired_hold_stops_counting_and_is_swept(world: World) -> None:
    await world.settings_changed(allow_negative=False)
    member = uuid.uuid4()
    await credit(world, member, 1000)
    place = hold(world, member, 1000, expires_in=1.0)
    assert (await ask(world, place)).granted
    assert (await world.balance(member))["available"]["amount"] == 0
    await asyncio.sleep(1.2)
    # On-read filtering: it no longer counts, whether or not the sweep ran yet.
    assert (await world.balance(member))["available"]["amount"] == 1000
    assert (await ask(world, hold(world, member, 1000))).granted
    await asyncio.sleep(0.5)  # the service sweeps every 0.2 s in tests
    async with world.service.database.sessionmaker() as session:
        from sqlalchemy import select

        from cagette_ledger.tables import holds

        status = await session.scalar(select(holds.c.status).where(holds.c.hold_id == place.hold_id))
    assert status == "expired"


async def test_release_over_rabbitmq(world: World) -> None:
    await world.settings_changed(allow_negative=False)
    member = uuid.uuid4()
    await credit(world, member, 1000)
    place = hold(world, member, 600)
    assert (await ask(world, place)).granted
    broker = RabbitBroker(world.service.settings.amqp_url)
    await broker.connect()
    try:
        release = ReleaseHold(hold_id=place.hold_id, group_id=world.group_id, reason="basket abandoned")
        reply = await broker.request(release.model_dump_json(), queue=routing.LEDGER_HOLD_RELEASES_QUEUE, timeout=5)
        answer = HoldReleased.model_validate_json(reply.body)
        assert (answer.status, answer.available) == ("released", world.money(1000))
        again = HoldReleased.model_validate_json(
            (await broker.request(release.model_dump_json(), queue=routing.LEDGER_HOLD_RELEASES_QUEUE, timeout=5)).body
        )
        assert again.status == "released"
    finally:
        await broker.stop()
    assert (await world.balance(member))["held"]["amount"] == 0


async def test_concurrent_holds_never_together_overdraw(world: World) -> None:
    """Ten concurrent holds of 400 on a balance of 1000, straight on the real database: exactly
    two are granted, whatever the interleaving."""
    await world.settings_changed(allow_negative=False)
    member = uuid.uuid4()
    await credit(world, member, 1000)
    requests = [hold(world, member, 400).model_dump_json().encode() for _ in range(10)]
    replies = await asyncio.gather(*(answer_hold_request(world.service.database, body) for body in requests))
    granted = [r for r in replies if r["granted"]]
    assert len(granted) == 2
    assert min(r["available"]["amount"] for r in replies) >= 0
    assert (await world.balance(member))["available"]["amount"] == 200


async def test_two_concurrent_holds_that_together_overdraw_exactly_one_granted(world: World) -> None:
    await world.settings_changed(allow_negative=False)
    for _ in range(5):  # several rounds, to meet different interleavings
        member = uuid.uuid4()
        await credit(world, member, 1000)
        first, second = hold(world, member, 600), hold(world, member, 600)
        decisions = await asyncio.gather(ask(world, first), ask(world, second))
        assert sorted(d.granted for d in decisions) == [False, True]
        assert (await world.balance(member))["available"]["amount"] == 400
    # The same straight on the database: two transactions really racing for the account row.
    for _ in range(10):
        member = uuid.uuid4()
        await credit(world, member, 1000)
        bodies = [hold(world, member, 600).model_dump_json().encode() for _ in range(2)]
        replies = await asyncio.gather(*(answer_hold_request(world.service.database, body) for body in bodies))
        assert sorted(r["granted"] for r in replies) == [False, True]
        refused = next(r for r in replies if not r["granted"])
        assert refused["available"]["amount"] == 400
        assert (await world.balance(member))["available"]["amount"] == 400


async def test_same_hold_id_concurrently_gets_one_decision(world: World) -> None:
    await world.settings_changed(allow_negative=False)
    member = uuid.uuid4()
    await credit(world, member, 1000)
    body = hold(world, member, 700).model_dump_json().encode()
    replies = await asyncio.gather(*(answer_hold_request(world.service.database, body) for _ in range(5)))
    assert all(r == replies[0] for r in replies) and replies[0]["granted"]
    assert (await world.balance(member))["held"]["amount"] == 700


async def test_expire_holds_operation(world: World) -> None:
    await world.settings_changed(allow_negative=False)
    member = uuid.uuid4()
    await credit(world, member, 1000)
    assert (await ask(world, hold(world, member, 300, expires_in=3600))).granted
    async with world.service.database.transaction() as session:
        expired = await operations.expire_holds(session, now=datetime.now(UTC) + timedelta(hours=2))
    assert expired >= 1
    assert (await world.balance(member))["held"]["amount"] == 0


async def test_hold_answered_with_a_retryable_refusal_when_the_database_fails(world: World) -> None:
    from cagette_runtime.db import Database

    broken = Database("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    try:
        reply = await answer_hold_request(broken, hold(world, uuid.uuid4(), 100).model_dump_json().encode())
    finally:
        await broken.dispose()
    decision = HoldDecision.model_validate(reply)
    assert not decision.granted and "ask again with the same hold_id" in (decision.reason or "")
