"""The one bootstrap place: a Service wires settings, database, broker, topology, consumers,
outbox relay and the HTTP app, and starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import APIRouter, FastAPI
from faststream.rabbit import RabbitBroker
from faststream.rabbit.schemas import Channel
from sqlalchemy import Table

from .auth import MembershipDirectory, TokenVerifier
from .background import BackgroundLoop
from .batching import BatchingConsumer
from .broker_admin import BrokerAdmin
from .consumer import Consumer, ConsumerRunner
from .db import Database, ensure_database
from .docs import install_docs
from .http import install_common
from .idempotency import IdempotencyRetention, IdempotentRoute
from .logs import configure_logging
from .memberships import TableMemberships, membership_consumer
from .metrics import DatabaseGauge, ServiceMetrics
from .migrations import upgrade_async
from .openapi import document_errors
from .outbox import OutboxRelay
from .retention import MessagingRetention
from .settings import ServiceSettings, load_settings
from .topology import declare_consumer_queue, declare_event_log, declare_exchanges
from .tracing import broker_middleware, instrument_app, instrument_engine, tracer_provider

log = logging.getLogger(__name__)

# Set by the server on the first stop signal (cli.draining_server): the process is going away.
shutdown_requested = threading.Event()


class Runner(Protocol):
    """What consumes one Consumer's queue: the runtime's ConsumerRunner (one transaction per
    message) or a service's own (the ledger's batches), returned by `Service.runner`. A runner
    that is also a BackgroundLoop is started after the broker and stopped before it."""

    name: str

    def subscribe(self) -> None: ...


class Service:
    def __init__(
        self,
        name: str,
        *,
        migrations: str,
        routers: Sequence[APIRouter] = (),
        consumers: Callable[[Service], Sequence[Consumer]] = lambda service: (),
        settings: ServiceSettings | None = None,
        description: str = "",
        gauges: Sequence[DatabaseGauge] = (),
        membership_table: Table | None = None,
        memberships: Callable[[Service], MembershipDirectory] | None = None,
    ) -> None:
        """`membership_table`: the service keeps its copy of orders' memberships there (a
        consumer of its own keeps it) and authorizes against it; `memberships`: where the
        current roles come from otherwise (orders: its own members table)."""
        self.name = name
        self.settings = settings or load_settings(name)
        self.settings.refuse_unsafe()
        self.migrations = migrations
        self.routers = routers
        self.description = description
        self.database = Database(self.settings.database_url, pool_size=self.settings.database_pool_size)
        # Observability: Prometheus metrics (with the service's own `gauges`) and traces.
        self.metrics = ServiceMetrics(name, gauges)
        self.tracer_provider = tracer_provider(name)
        instrument_engine(self.database.engine, self.tracer_provider)
        self.broker_admin = BrokerAdmin(
            self.settings.amqp_url,
            mode=self.settings.broker_policies,
            management_url=self.settings.rabbitmq_management_url,
        )
        # True from the shutdown signal on: /ready answers 503 so no new request is routed here.
        self.draining = False
        self.broker = RabbitBroker(
            self.settings.amqp_url,
            default_channel=Channel(
                prefetch_count=self.settings.prefetch_count, publisher_confirms=True, on_return_raises=True
            ),
            log_level=logging.getLevelName(self.settings.broker_log_level.upper()),
            app_id=f"cagette-{name}",
            fail_fast=True,
            # After an outage: reconnect soon, and let the relay publish what waited at once.
            reconnect_interval=self.settings.broker_reconnect_interval,
            on_reconnected=[self._broker_reconnected],
            middlewares=[self.metrics.broker_middleware(), broker_middleware(self.tracer_provider)],
        )
        self.relay = OutboxRelay(
            self.database,
            self.broker,
            batch_size=self.settings.outbox_batch_size,
            poll_interval=self.settings.outbox_poll_interval,
            max_backoff=self.settings.outbox_max_backoff,
            unroutable_grace=self.settings.outbox_unroutable_grace,
            published=self.metrics.outbox_published,
            app_id=f"cagette-{name}",
        )
        # Loops started after the broker and stopped before it; services append their own.
        self.background: list[BackgroundLoop] = [
            self.relay,
            MessagingRetention(
                self.database,
                outbox_days=self.settings.outbox_retention_days,
                inbox_days=self.settings.inbox_retention_days,
            ),
        ]
        if any(isinstance(route, IdempotentRoute) for router in routers for route in router.routes):
            self.background.append(IdempotencyRetention(self.database, hours=self.settings.idempotency_retention_hours))
        self.consumers = list(consumers(self))
        self.memberships: MembershipDirectory | None = None
        if membership_table is not None:
            self.consumers.append(
                membership_consumer(name, membership_table, delivery_limit=self.settings.delivery_limit)
            )
            self.memberships = TableMemberships(self.database, membership_table)
        if memberships is not None:
            self.memberships = memberships(self)
        self.runners = [self.runner(consumer) for consumer in self.consumers]
        for runner in self.runners:
            runner.subscribe()
            if isinstance(runner, BackgroundLoop):
                self.background.append(runner)

    def _broker_reconnected(self, connection: object) -> None:
        log.info("%s: broker connection back", self.name)
        self.relay.broker_reconnected(connection)

    def consumer_runner(self, consumer: Consumer) -> ConsumerRunner:
        """The runtime's pipeline for `consumer` (decode, park, claim, handle, retry), with this
        service's retry delays."""
        return ConsumerRunner(
            self.broker,
            self.database,
            consumer,
            retry_delay=self.settings.consumer_retry_delay,
            retry_max_delay=self.settings.consumer_retry_max_delay,
        )

    def runner(self, consumer: Consumer) -> Runner:
        """The extension point for a runner of its own: how this service consumes `consumer`'s
        queue. Called while the Service is built, once per consumer; by default the runtime's
        one transaction per message, or per delivered batch for a batched consumer."""
        if consumer.batched and self.settings.consumer_batch_size > 1:
            return BatchingConsumer(self.consumer_runner(consumer), max_batch=self.settings.consumer_batch_size)
        return self.consumer_runner(consumer)

    async def migrate(self) -> None:
        if await ensure_database(self.settings.database_url):
            log.info("created database for %s", self.name)
        await upgrade_async(self.settings.database_url, self.migrations)

    async def start(self) -> None:
        if self.settings.migrate_on_start:
            await self.migrate()
        await self.database.ping()
        await self.broker.connect()
        await declare_exchanges(self.broker)
        await declare_event_log(
            self.broker,
            self.settings.event_log_max_age,
            self.settings.event_log_max_bytes,
            self.settings.event_log_segment_bytes,
        )
        for consumer in self.consumers:
            await declare_consumer_queue(self.broker, consumer.queue, self.broker_admin)
        await self.broker.start()
        for loop in self.background:
            loop.start()
        log.info("%s started", self.name)

    async def stop(self) -> None:
        self.draining = True
        for loop in reversed(self.background):
            await loop.stop()
        await self.broker.stop()
        await self.database.dispose()
        self.tracer_provider.shutdown()  # exports the spans still buffered

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        if self.draining or shutdown_requested.is_set():
            checks["shutdown"] = "draining: this replica is stopping"
        try:
            await asyncio.wait_for(self.database.ping(), timeout=2)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["broker"] = "ok" if await self.broker.ping(timeout=2) else "unreachable"
        return checks

    def create_app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        configure_logging(self.name, self.settings.log_level, self.settings.broker_log_level)
        app = FastAPI(
            title=f"cagette {self.name}",
            description=self.description,
            lifespan=lifespan,
            docs_url=None,
            redoc_url=None,
        )
        app.state.settings = self.settings
        app.state.service = self
        app.state.token_verifier = TokenVerifier(self.settings)
        install_common(app, self.settings)
        self.metrics.instrument(app)
        instrument_app(app, self.tracer_provider)
        for router in self.routers:
            app.include_router(router)
        install_docs(app)
        document_errors(app)
        return app
