"""What an operator sees and changes: /metrics, broker policies, readiness while stopping."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import httpx
from fastapi import APIRouter
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts.routing import EVENTS_EXCHANGE
from cagette_runtime import outbox
from cagette_runtime.broker_admin import BrokerAdmin
from cagette_runtime.consumer import Consumer
from cagette_runtime.errors import Invalid, NotFound
from cagette_runtime.http import DatabaseDep
from cagette_runtime.service import Service
from cagette_runtime.settings import ServiceSettings
from cagette_runtime.tables import messaging_metadata, outbox_messages
from cagette_runtime.testing import IsolatedServers, Outage

from .conftest import WidgetCreated, widget_event, widgets, widgets_metadata


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of metric `name` (full sample name), by their sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


widgets_router = APIRouter()


@widgets_router.get("/widgets/{widget_id}")
async def get_widget(widget_id: uuid.UUID, database: DatabaseDep) -> dict[str, str]:
    async with database.transaction() as session:
        name = await session.scalar(select(widgets.c.name).where(widgets.c.widget_id == widget_id))
    if name is None:
        raise NotFound("no such widget")
    return {"name": name}


@asynccontextmanager
async def widget_service(
    servers: IsolatedServers,
    vhost_url: str,
    database_url: str,
    queue: str,
    delivery_limit: int = 5,
    **overrides: Any,
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    async def handle(session: AsyncSession, event: WidgetCreated) -> None:
        if event.name.startswith("refuse"):
            raise Invalid("refused widget")

    settings = ServiceSettings(
        service_name="widgets",
        database_url=database_url,
        amqp_url=vhost_url,
        migrate_on_start=False,
        delivery_limit=delivery_limit,
        **overrides,
    )
    service = Service(
        "widgets",
        migrations="unused",
        settings=settings,
        routers=[widgets_router],
        consumers=lambda s: [Consumer(queue, {WidgetCreated: handle}, delivery_limit=s.settings.delivery_limit)],
    )
    app = service.create_app()
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://widgets") as client:
            yield service, client


async def publish(amqp_url: str, body: bytes, message_id: str) -> None:
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        message = aio_pika.Message(body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await exchange.publish(message, routing_key="test.widget.created")


async def until(probe, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (answer := await probe()):
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
    return answer


async def fresh_database(servers: IsolatedServers) -> str:
    url = await servers.create_database(f"ops{uuid.uuid4().hex[:8]}")
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(messaging_metadata.create_all)
        await connection.run_sync(widgets_metadata.create_all)
    await engine.dispose()
    return url


async def test_metrics_show_http_messaging_outbox_and_parked_figures(servers: IsolatedServers) -> None:
    vhost = await servers.create_vhost(f"metrics{uuid.uuid4().hex[:6]}")
    queue = "widgets.events"
    async with widget_service(servers, vhost, await fresh_database(servers), queue) as (service, client):
        before = (await client.get("/metrics")).text
        assert samples(before, "cagette_outbox_pending_messages") == {(): 0.0}
        assert samples(before, "cagette_parked_messages") == {
            (("queue", "cagette.unrouted"),): 0.0,
            (("queue", "widgets.events.parking"),): 0.0,
        }

        # An outbox row the relay cannot publish yet, a consumed message and a parked one.
        async with service.database.transaction() as session:
            await session.execute(
                insert(outbox_messages).values(
                    event_id=uuid.uuid4(), routing_key="test.later", body="{}", correlation_id="c1"
                )
            )
        for name in ("fine", "refuse-me"):
            event = widget_event(name)
            await publish(vhost, event.model_dump_json().encode(), str(event.event_id))
        await client.get("/asyncapi.json")

        async def parked() -> str | None:
            text = (await client.get("/metrics")).text
            return (
                text if samples(text, "cagette_parked_messages").get((("queue", "widgets.events.parking"),)) else None
            )

        after = await until(parked)

    assert samples(after, "cagette_outbox_pending_messages") == {(): 1.0}
    assert samples(after, "cagette_retrying_messages") == {(("queue", "widgets.events.retry"),): 0.0}
    assert samples(after, "cagette_outbox_oldest_pending_seconds")[()] >= 0
    http = samples(after, "http_requests_total")
    assert http[(("handler", "/asyncapi.json"), ("method", "GET"), ("status", "2xx"))] == 1
    received = samples(after, "faststream_received_messages_total")
    assert sum(received.values()) == 2
    processed = samples(after, "faststream_received_processed_messages_total")
    assert sum(processed.values()) == 2
    assert samples(after, "cagette_metrics_source_up") == {(("source", "broker"),): 1.0, (("source", "database"),): 1.0}


async def test_the_delivery_limit_changes_on_a_live_broker_without_deleting_the_queue(
    servers: IsolatedServers,
) -> None:
    vhost = await servers.create_vhost(f"policy{uuid.uuid4().hex[:6]}")
    database = await fresh_database(servers)
    queue = "widgets.events"
    policies = BrokerAdmin(vhost)

    async def limit() -> int:
        [policy] = [p for p in await policies.current() if p["name"] == f"cagette.{queue}"]
        return int(policy["definition"]["delivery-limit"])

    async with widget_service(servers, vhost, database, queue, delivery_limit=5):
        assert await limit() == 5
    async with widget_service(servers, vhost, database, queue, delivery_limit=2) as (service, client):
        assert await limit() == 2
        # The same queue, still consuming: a message goes through.
        event = widget_event("after-restart")
        await publish(vhost, event.model_dump_json().encode(), str(event.event_id))
        assert await until(lambda: _processed(service, event.event_id))


async def _processed(service: Service, event_id: uuid.UUID) -> bool:
    from sqlalchemy import func, select

    from cagette_runtime.tables import inbox_messages

    async with service.database.sessionmaker() as session:
        return bool(await session.scalar(select(func.count()).where(inbox_messages.c.event_id == event_id)))


async def test_a_queue_created_with_arguments_before_policies_keeps_working(servers: IsolatedServers) -> None:
    vhost = await servers.create_vhost(f"legacy{uuid.uuid4().hex[:6]}")
    queue = "widgets.events"
    connection = await aio_pika.connect_robust(vhost)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": 5,
                "x-dead-letter-exchange": "cagette.dead-letter",
                "x-dead-letter-routing-key": queue,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
    async with widget_service(servers, vhost, await fresh_database(servers), queue) as (service, client):
        event = widget_event("legacy")
        await publish(vhost, event.model_dump_json().encode(), str(event.event_id))
        assert await until(lambda: _processed(service, event.event_id))
        assert (await client.get("/ready")).status_code == 200


async def test_ready_answers_503_once_the_service_is_stopping(servers: IsolatedServers) -> None:
    vhost = await servers.create_vhost(f"drain{uuid.uuid4().hex[:6]}")
    async with widget_service(servers, vhost, await fresh_database(servers), "widgets.events") as (service, client):
        assert (await client.get("/ready")).status_code == 200
        service.draining = True
        answer = await client.get("/ready")
        assert answer.status_code == 503
        assert answer.json()["checks"]["shutdown"].startswith("draining")
        assert (await client.get("/health")).status_code == 200


async def test_with_the_database_down_requests_get_a_503_with_retry_after(servers: IsolatedServers) -> None:
    vhost = await servers.create_vhost(f"dbdown{uuid.uuid4().hex[:6]}")
    database_url = await fresh_database(servers)
    async with Outage(database_url) as database:
        async with widget_service(servers, vhost, database.url, "widgets.dbdown") as (service, client):
            widget = uuid.uuid4()
            assert (await client.get(f"/widgets/{widget}")).status_code == 404
            await database.down()
            for _ in range(3):  # a lost connection, then refused ones
                answer = await client.get(f"/widgets/{widget}")
                assert answer.status_code == 503, answer.text
                assert answer.headers["Retry-After"] == "5"
                assert answer.json()["error"] == "unavailable"
                assert "unavailable right now" in answer.json()["detail"]
            ready = await client.get("/ready")
            assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unreachable")
            await database.up()
            assert (await client.get(f"/widgets/{widget}")).status_code == 404
            assert (await client.get("/ready")).status_code == 200


async def test_after_a_broker_outage_the_relay_does_not_wait_out_its_backoff(servers: IsolatedServers) -> None:
    """An event written while the broker is away backs off (up to a minute); once the broker is
    back the service is ready again and the relay publishes the event at once, long before its
    backoff would have ended."""
    vhost = await servers.create_vhost(f"brokerdown{uuid.uuid4().hex[:6]}")
    queue = "widgets.brokerdown"
    async with Outage(vhost) as broker:
        async with widget_service(
            servers,
            broker.url,
            await fresh_database(servers),
            queue,
            outbox_poll_interval=0.1,
            broker_reconnect_interval=0.2,
        ) as (service, client):
            assert (await client.get("/ready")).status_code == 200
            await broker.down()

            async def not_ready() -> bool:
                return (await client.get("/ready")).status_code == 503

            await until(not_ready)
            event = widget_event("written-during-the-outage")
            async with service.database.transaction() as session:
                await outbox.add(session, event)

            async def backing_off() -> Any:
                async with service.database.sessionmaker() as session:
                    row = (
                        await session.execute(
                            select(outbox_messages).where(outbox_messages.c.event_id == event.event_id)
                        )
                    ).first()
                return row if row is not None and row.attempts >= 3 else None

            row = await until(backing_off, timeout=60)
            assert row.published_at is None
            await broker.up()

            async def ready() -> bool:
                return (await client.get("/ready")).status_code == 200

            await until(ready)

            async def published() -> Any:
                async with service.database.sessionmaker() as session:
                    return await session.scalar(
                        select(outbox_messages.c.published_at).where(outbox_messages.c.event_id == event.event_id)
                    )

            published_at = await until(published)
            async with service.database.sessionmaker() as session:
                last = (
                    await session.execute(select(outbox_messages).where(outbox_messages.c.event_id == event.event_id))
                ).one()
            print(
                "attempts", row.attempts, "backoff until", row.next_attempt_at, "published", published_at, last.attempts
            )
            assert published_at < row.next_attempt_at
