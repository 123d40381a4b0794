"""Consumption on the real broker: idempotent, poison messages parked with their reason while the
consumer keeps going, and outages (RetryLater, the database down) retried through the retry queue
for as long as they last, never counted against the delivery limit. Each test runs on both
runners: one transaction per message, and batches (batching.py)."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest
from sqlalchemy import func, select

from cagette_contracts import Event
from cagette_contracts.routing import EVENTS_EXCHANGE
from cagette_runtime.batching import BatchingConsumer
from cagette_runtime.broker_admin import BrokerAdmin
from cagette_runtime.consumer import (
    PARKING_REASON_HEADER,
    Consumer,
    ConsumerRunner,
    EventHandlers,
    MalformedMessage,
    parse_event,
)
from cagette_runtime.db import Database
from cagette_runtime.errors import Invalid, NotYet, RetryLater
from cagette_runtime.tables import inbox_messages
from cagette_runtime.testing import Outage, drain_queue, eventually
from cagette_runtime.topology import declare_consumer_queue

from .conftest import WidgetCreated, WidgetUnrouted, make_broker, widget_event, widgets


class Harness:
    """A consumer of test.widget.* whose handler records widgets, with scripted failures."""

    def __init__(self, batched: bool, servers, database, delivery_limit: int = 3) -> None:
        self.servers = servers
        self.database = database
        consumer = Consumer(
            f"test.widgets.{uuid.uuid4().hex[:8]}", {WidgetCreated: self.handle}, delivery_limit=delivery_limit
        )
        self.queue = consumer.queue
        self.failures: dict[str, int] = {}  # widget name -> transient failures still to raise
        self.broker = make_broker(servers)
        runner = ConsumerRunner(self.broker, database, consumer, retry_delay=0.05, retry_max_delay=0.2)
        self.batches = BatchingConsumer(runner) if batched else None
        (self.batches or runner).subscribe()

    async def handle(self, session, event) -> None:
        if event.name.startswith("refuse"):
            raise Invalid(f"widget name {event.name!r} is not allowed")
        if event.name == "always-fails":
            raise RuntimeError("database exploded")
        if event.name == "never-known":
            raise NotYet("the fact it needs never comes")
        if self.failures.get(event.name, 0) > 0:
            self.failures[event.name] -= 1
            if event.name.startswith("outage"):
                raise RetryLater("the ledger does not answer")
            if event.name.startswith("later"):
                raise NotYet("the fact it needs has not arrived yet")
            raise RuntimeError("transient failure")
        existing = await session.scalar(select(widgets.c.effects).where(widgets.c.widget_id == event.widget_id))
        if existing is None:
            await session.execute(widgets.insert().values(widget_id=event.widget_id, name=event.name))
        else:  # would only happen if a duplicate got through: make it visible
            await session.execute(
                widgets.update().where(widgets.c.widget_id == event.widget_id).values(effects=existing + 1)
            )

    async def __aenter__(self) -> Harness:
        await self.broker.connect()
        await declare_consumer_queue(self.broker, self.queue, BrokerAdmin(self.servers.amqp_url))
        await self.broker.start()
        if self.batches is not None:
            self.batches.start()
        self.connection = await aio_pika.connect_robust(self.servers.amqp_url)
        channel = await self.connection.channel()
        self.exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()
        if self.batches is not None:
            await self.batches.stop()
        await self.broker.stop()

    async def publish_raw(self, body: bytes, message_id: str, routing_key: str = "test.widget.created") -> None:
        await self.exchange.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
            ),
            routing_key=routing_key,
        )

    async def publish(self, event: WidgetCreated) -> None:
        await self.publish_raw(event.model_dump_json().encode(), str(event.event_id))

    async def effects(self, event: WidgetCreated) -> int | None:
        async with self.database.sessionmaker() as session:
            return await session.scalar(select(widgets.c.effects).where(widgets.c.widget_id == event.widget_id))

    async def wait_processed(self, event: WidgetCreated, timeout: float = 15) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while await self.effects(event) is None:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{event.name} was not processed within {timeout}s")
            await asyncio.sleep(0.05)


@pytest.fixture(params=[False, True], ids=["per-message", "batched"])
def batched(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_parse_event_says_what_is_wrong() -> None:
    with pytest.raises(MalformedMessage, match="not JSON"):
        parse_event(b"{nope")
    with pytest.raises(MalformedMessage, match="not a JSON object"):
        parse_event(b"[1, 2]")
    with pytest.raises(MalformedMessage, match="no contract for event 'orders.order.shipped'"):
        parse_event(b'{"event_type": "orders.order.shipped", "schema_version": 1}')
    with pytest.raises(MalformedMessage, match="widget_id"):
        parse_event(
            b'{"event_type": "test.widget.created", "schema_version": 1, "group_id": "%s", "name": "x"}'
            % str(uuid.uuid4()).encode()
        )


async def test_duplicated_message_has_one_effect(batched: bool, servers, database) -> None:
    event = widget_event("once")
    async with Harness(batched, servers, database) as harness:
        for _ in range(3):
            await harness.publish(event)
        sentinel = widget_event("after")
        await harness.publish(sentinel)
        await harness.wait_processed(sentinel)
        await harness.wait_processed(event)
        await asyncio.sleep(0.3)
    assert await harness.effects(event) == 1
    async with database.sessionmaker() as session:
        claimed = await session.scalar(select(func.count()).where(inbox_messages.c.event_id == event.event_id))
    assert claimed == 1


async def test_malformed_message_is_parked_with_reason_and_the_next_is_processed(
    batched: bool, servers, database
) -> None:
    async with Harness(batched, servers, database) as harness:
        await harness.publish_raw(b"this is not json", message_id="garbage-1")
        await harness.publish_raw(b'{"event_type": "test.widget.created", "schema_version": 1}', message_id="garbage-2")
        good = widget_event("good")
        await harness.publish(good)
        await harness.wait_processed(good)
        parked = await drain_queue(servers.amqp_url, harness.queue.parking_name, expected=2)
    assert [m.message_id for m in parked] == ["garbage-1", "garbage-2"]
    assert "body is not JSON" in parked[0].headers[PARKING_REASON_HEADER]
    assert "not a valid event" in parked[1].headers[PARKING_REASON_HEADER]
    assert parked[0].body == b"this is not json"
    assert parked[0].headers["x-original-routing-key"] == "test.widget.created"


async def test_refused_message_is_parked_with_the_domain_reason_and_changes_nothing(
    batched: bool, servers, database
) -> None:
    async with Harness(batched, servers, database) as harness:
        refused = widget_event("refuse-me")
        await harness.publish(refused)
        good = widget_event("fine")
        await harness.publish(good)
        await harness.wait_processed(good)
        [parked] = await drain_queue(servers.amqp_url, harness.queue.parking_name)
    assert "refused: widget name 'refuse-me' is not allowed" in parked.headers[PARKING_REASON_HEADER]
    assert await harness.effects(refused) is None
    async with database.sessionmaker() as session:
        assert await session.scalar(select(func.count()).where(inbox_messages.c.event_id == refused.event_id)) == 0


async def all_buffered(batches: BatchingConsumer, count: int) -> None:
    async def arrived() -> bool:
        return batches.received == count

    await eventually(arrived)


async def test_a_batch_commits_together_and_its_refused_message_costs_the_others_nothing(servers, database) -> None:
    """Fifteen deliveries buffered while the batch loop is held: one batch, whose refused message
    rolls it back; each message is then handled alone (the refused one parked, a duplicate
    ignored), every good widget has exactly one effect."""
    async with Harness(True, servers, database) as harness:
        batches = harness.batches
        assert batches is not None
        await batches.stop()
        good = [widget_event(f"widget-{n}") for n in range(13)]
        refused = widget_event("refuse-this-one")
        for event in [*good[:6], refused, good[0], *good[6:]]:
            await harness.publish(event)
        await all_buffered(batches, 15)
        batches.start()
        for event in good:
            await harness.wait_processed(event)
        [parked] = await drain_queue(servers.amqp_url, harness.queue.parking_name)
    assert batches.largest == 0 and batches.fallbacks == 1  # the one batch fell back
    assert [await harness.effects(event) for event in good] == [1] * 13
    assert parked.message_id == str(refused.event_id) and await harness.effects(refused) is None

    async with Harness(True, servers, database) as harness:
        batches = harness.batches
        assert batches is not None
        await batches.stop()
        more = [widget_event(f"more-{n}") for n in range(10)]
        for event in more:
            await harness.publish(event)
        await all_buffered(batches, 10)
        batches.start()
        for event in more:
            await harness.wait_processed(event)
    assert (batches.batches, batches.largest, batches.fallbacks) == (1, 10, 0)


async def test_transient_failure_is_retried_then_processed_once(batched: bool, servers, database) -> None:
    async with Harness(batched, servers, database, delivery_limit=5) as harness:
        flaky = widget_event("flaky")
        harness.failures["flaky"] = 2
        await harness.publish(flaky)
        await harness.wait_processed(flaky)
    assert await harness.effects(flaky) == 1
    assert harness.failures["flaky"] == 0


async def test_not_yet_is_retried_without_a_traceback(batched: bool, servers, database, caplog) -> None:
    async with Harness(batched, servers, database, delivery_limit=5) as harness:
        waiting = widget_event("later-please")
        harness.failures["later-please"] = 1
        await harness.publish(waiting)
        await harness.wait_processed(waiting)
    waits = [r for r in caplog.records if "waits in" in r.getMessage()]
    assert len(waits) == 1 and waits[0].exc_info is None
    assert await harness.effects(waiting) == 1


async def test_retry_later_is_never_counted_against_the_delivery_limit(
    batched: bool, servers, database, caplog
) -> None:
    async with Harness(batched, servers, database, delivery_limit=2) as harness:
        waiting = widget_event("outage-then-fine")
        harness.failures["outage-then-fine"] = 6  # three times the delivery limit
        await harness.publish(waiting)
        await harness.wait_processed(waiting)
        assert await drain_queue(servers.amqp_url, harness.queue.parking_name, expected=1, timeout=0.5) == []
    assert harness.failures["outage-then-fine"] == 0
    assert await harness.effects(waiting) == 1
    waits = [r for r in caplog.records if "(not counted)" in r.getMessage()]
    assert len(waits) == 6 and all(r.exc_info is None for r in waits)


async def test_the_database_down_longer_than_the_delivery_limit_loses_nothing(
    batched: bool, servers, database, caplog
) -> None:
    """The consumer's database goes away (connections cut, new ones refused) while events arrive:
    each is retried through the retry queue, well past the delivery limit, and processed once the
    database is back; nothing is parked, and the consumer never waited on one of them."""
    async with Outage(database.url) as outage:
        proxied = Database(outage.url, pool_size=2)
        try:
            async with Harness(batched, servers, proxied, delivery_limit=2) as harness:
                await outage.down()
                events = [widget_event(f"during-outage-{n}") for n in range(3)]
                for event in events:
                    await harness.publish(event)
                deadline = asyncio.get_running_loop().time() + 20
                while sum("(not counted)" in r.getMessage() for r in caplog.records) < 3 * 4:
                    assert asyncio.get_running_loop().time() < deadline, "the events were not retried"
                    await asyncio.sleep(0.05)
                await outage.up()
                for event in events:
                    await harness.wait_processed(event)
                assert await drain_queue(servers.amqp_url, harness.queue.parking_name, expected=1, timeout=0.5) == []
                assert [await harness.effects(event) for event in events] == [1, 1, 1]
        finally:
            await proxied.dispose()
    waits = [r for r in caplog.records if "(not counted)" in r.getMessage()]
    assert "database is unavailable" in waits[0].getMessage() or "unavailable right now" in waits[0].getMessage()


async def test_message_that_keeps_failing_is_parked_with_its_reason_at_the_delivery_limit(
    batched: bool, servers, database
) -> None:
    async with Harness(batched, servers, database, delivery_limit=2) as harness:
        doomed = widget_event("always-fails")
        await harness.publish(doomed)
        never = widget_event("never-known")
        await harness.publish(never)
        after = widget_event("still-flowing")
        await harness.publish(after)
        await harness.wait_processed(after)
        parked = await drain_queue(servers.amqp_url, harness.queue.parking_name, expected=2, timeout=20)
    reasons = {m.message_id: m.headers[PARKING_REASON_HEADER] for m in parked}
    assert reasons[str(doomed.event_id)] == ("failed 2 times (delivery limit 2): RuntimeError: database exploded")
    assert reasons[str(never.event_id)] == "failed 2 times (delivery limit 2): NotYet: the fact it needs never comes"
    assert await harness.effects(doomed) is None and await harness.effects(never) is None


async def test_the_registry_derives_bindings_and_dispatch() -> None:
    seen: list[Event] = []

    async def on_widget(session, event: WidgetCreated) -> None:
        seen.append(event)

    async def on_any(session, event: Event) -> None:
        seen.append(event)

    consumer = Consumer("test.registry", {WidgetCreated: on_widget, WidgetUnrouted: on_widget}, delivery_limit=3)
    assert consumer.queue.routing_keys == ("test.widget.created", "test.nobody.listens")
    assert consumer.queue.delivery_limit == 3
    assert consumer.handlers.event_classes == (WidgetCreated, WidgetUnrouted)
    catch_all = EventHandlers({Event: on_any, WidgetCreated: on_widget})
    assert catch_all.routing_keys() == ("#", "test.widget.created")
    assert catch_all.handler_for(widget_event()) is on_widget  # the most specific class wins
    assert catch_all.handler_for(WidgetUnrouted(group_id=uuid.uuid4())) is on_any
    only_widgets = EventHandlers({WidgetCreated: on_widget})
    assert not only_widgets.accepts(WidgetUnrouted(group_id=uuid.uuid4()))
    with pytest.raises(Invalid, match="test.nobody.listens has no handler here"):
        await only_widgets.dispatch(None, WidgetUnrouted(group_id=uuid.uuid4()))  # type: ignore[arg-type]  # never used
