"""The outbox on the real broker: only committed events go out, confirmed, and none is lost."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from cagette_runtime import outbox
from cagette_runtime.db import Database
from cagette_runtime.outbox import OutboxRelay
from cagette_runtime.tables import outbox_messages
from cagette_runtime.testing import EventSpy, drain_queue
from cagette_runtime.topology import UNROUTED_QUEUE

from .conftest import WidgetUnrouted, make_broker, widget_event, widgets


async def pending_rows(database: Database) -> list:
    async with database.sessionmaker() as session:
        return (await session.execute(select(outbox_messages).order_by(outbox_messages.c.id))).all()


async def test_committed_event_is_published_persistent_and_marked_sent(database, broker, servers) -> None:
    event = widget_event("committed")
    async with EventSpy(servers.amqp_url, "test.widget.#") as spy:
        async with database.transaction() as session:
            await session.execute(widgets.insert().values(widget_id=event.widget_id, name=event.name))
            await outbox.add(session, event)
        relay = OutboxRelay(database, broker)
        assert await relay.relay_once() == 1
        [seen] = await spy.wait_for("test.widget.created", widget_id=str(event.widget_id))
    assert seen.raw.message_id == str(event.event_id)
    assert seen.raw.delivery_mode.value == 2  # persistent
    assert seen.raw.correlation_id == event.correlation_id
    assert seen.raw.headers["x-schema-version"] == 1
    [row] = await pending_rows(database)
    assert row.published_at is not None and row.attempts == 0
    assert await relay.relay_once() == 0  # nothing is published twice


async def test_rolled_back_event_is_never_published(database, broker, servers) -> None:
    event = widget_event("rolled back")
    async with EventSpy(servers.amqp_url, "test.widget.#") as spy:
        with pytest.raises(RuntimeError, match="state change failed"):
            async with database.transaction() as session:
                await outbox.add(session, event)
                raise RuntimeError("state change failed")
        assert await OutboxRelay(database, broker).relay_once() == 0
        await asyncio.sleep(0.5)
    assert spy.messages == []
    assert await pending_rows(database) == []


async def test_event_survives_a_relay_restart_and_a_broker_outage(database, servers) -> None:
    event = widget_event("survivor")
    async with database.transaction() as session:
        await outbox.add(session, event)

    # A relay whose broker connection is gone fails its pass; the row stays pending.
    dead_broker = make_broker(servers)
    await dead_broker.connect()
    await dead_broker.stop()
    failing = OutboxRelay(database, dead_broker, max_backoff=0.1)
    assert await failing.relay_once() == 0
    [row] = await pending_rows(database)
    assert row.published_at is None
    assert row.attempts == 1 and "connect" in row.last_error

    # A new relay (the service restarted) publishes it, once.
    async with EventSpy(servers.amqp_url, "test.widget.#") as spy:
        broker = make_broker(servers)
        await broker.connect()
        relay = OutboxRelay(database, broker, poll_interval=0.05)
        relay.start()
        try:
            await spy.wait_for("test.widget.created", widget_id=str(event.widget_id))
            await asyncio.sleep(0.3)
        finally:
            await relay.stop()
            await broker.stop()
    assert len(spy.matching("test.widget.created", widget_id=str(event.widget_id))) == 1
    [row] = await pending_rows(database)
    assert row.published_at is not None


async def test_unroutable_event_stays_pending_and_is_retried_once_a_queue_is_bound(database, broker, servers) -> None:
    event = WidgetUnrouted(group_id=widget_event().group_id)
    async with database.transaction() as session:
        await outbox.add(session, event)
    relay = OutboxRelay(database, broker, max_backoff=0.0)
    assert await relay.relay_once() == 0
    [row] = await pending_rows(database)
    assert row.published_at is None
    assert row.attempts == 1
    assert "unroutable" in row.last_error

    async with EventSpy(servers.amqp_url, "test.nobody.#") as spy:
        assert await relay.relay_once() == 1
        await spy.wait_for("test.nobody.listens")
    [row] = await pending_rows(database)
    assert row.published_at is not None


async def test_unroutable_events_of_one_type_log_one_line_per_interval(database, broker, caplog) -> None:
    group_id = widget_event().group_id
    async with database.transaction() as session:
        await outbox.add(session, *(WidgetUnrouted(group_id=group_id) for _ in range(5)))
    relay = OutboxRelay(database, broker, max_backoff=0.0, unroutable_log_interval=3600)
    with caplog.at_level("WARNING", logger="cagette_runtime.outbox"):
        assert await relay.relay_once() == 0
        assert await relay.relay_once() == 0
    lines = [r.getMessage() for r in caplog.records if "test.nobody.listens" in r.getMessage()]
    assert lines == [
        "test.nobody.listens events are unroutable (no queue bound yet), retried with backoff for 300s before parking"
    ]
    assert len(await pending_rows(database)) == 5


async def test_event_unroutable_past_the_grace_period_is_parked_not_lost(database, broker, servers) -> None:
    event = WidgetUnrouted(group_id=widget_event().group_id)
    async with database.transaction() as session:
        await outbox.add(session, event)
    relay = OutboxRelay(database, broker, unroutable_grace=0.0)
    assert await relay.relay_once() == 0
    [row] = await pending_rows(database)
    assert row.published_at is not None
    assert "parked in cagette.unrouted" in row.last_error
    parked = await drain_queue(servers.amqp_url, UNROUTED_QUEUE)
    mine = [m for m in parked if m.message_id == str(event.event_id)]
    assert len(mine) == 1
    assert mine[0].headers["x-original-routing-key"] == "test.nobody.listens"
    assert "no queue is bound" in mine[0].headers["x-unroutable-reason"]
    assert await relay.relay_once() == 0


async def test_many_events_are_published_in_batches_each_exactly_once(database, broker, servers) -> None:
    events = [widget_event(f"w{i}") for i in range(250)]
    async with database.transaction() as session:
        await outbox.add(session, *events)
    async with EventSpy(servers.amqp_url, "test.widget.#") as spy:
        relay = OutboxRelay(database, broker, batch_size=100)
        assert [await relay.relay_once() for _ in range(4)] == [100, 100, 50, 0]
        await spy.wait_for("test.widget.created", count=250)
        await asyncio.sleep(0.3)
    assert sorted(m.raw.message_id for m in spy.messages) == sorted(str(e.event_id) for e in events)
    async with database.sessionmaker() as session:
        assert await session.scalar(select(func.count()).where(outbox_messages.c.published_at.is_(None))) == 0


async def test_retention_deletes_only_old_published_rows_and_old_inbox_rows(database, broker) -> None:
    from sqlalchemy import text

    from cagette_runtime.retention import MessagingRetention
    from cagette_runtime.tables import inbox_messages

    old_published, old_pending, recent = widget_event("old"), widget_event("pending"), widget_event("recent")
    async with database.transaction() as session:
        await outbox.add(session, old_published, old_pending, recent)
        await session.execute(
            inbox_messages.insert(),
            [{"consumer": "c", "event_id": old_published.event_id}, {"consumer": "c", "event_id": recent.event_id}],
        )
    async with database.transaction() as session:
        await session.execute(
            text("UPDATE outbox_messages SET published_at = now() - interval '8 days' WHERE event_id = :old"),
            {"old": old_published.event_id},
        )
        await session.execute(
            text("UPDATE outbox_messages SET created_at = now() - interval '8 days' WHERE event_id = :pending"),
            {"pending": old_pending.event_id},
        )
        await session.execute(
            text("UPDATE inbox_messages SET processed_at = now() - interval '31 days' WHERE event_id = :old"),
            {"old": old_published.event_id},
        )
    assert await MessagingRetention(database, outbox_days=7, inbox_days=30).purge() == (1, 1)
    remaining = {row.event_id for row in await pending_rows(database)}
    assert remaining == {old_pending.event_id, recent.event_id}  # never delete what is not yet published
    async with database.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(inbox_messages)) == 1
