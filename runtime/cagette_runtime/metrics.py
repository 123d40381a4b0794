"""Prometheus metrics at /metrics, the same for every service.

Three sources, each from its library, in one registry per service:
- HTTP: prometheus-fastapi-instrumentator (requests, latency histograms by route and status);
- messaging: FastStream's own RabbitPrometheusMiddleware on the broker (received, processed,
  duration, published, by destination and outcome), and the outbox relay's own count of the
  events it published (it publishes beside FastStream's pipeline, see outbox.py);
- what only we know, read from the service's database and broker when Prometheus scrapes:
  the outbox backlog and its oldest row, the parking queues' depths, plus each service's own
  `DatabaseGauge`s (holds active, email backlog, ...). Reading at scrape time means a value is
  never staler than the scrape, and replicas report the same shared figures (alert on max()).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse
from faststream.rabbit import RabbitQueue
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator
from sqlalchemy import ColumnElement, Executable, Table, extract, func, select
from starlette.responses import Response

from .tables import outbox_messages
from .topology import UNROUTED_QUEUE

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseGauge:
    """A gauge read from the service's database at each scrape. `query` returns one row per
    label set: the label values (as many as `labels`) then the value."""

    name: str
    documentation: str
    query: Executable
    labels: tuple[str, ...] = ()


def seconds_since(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """SQL: seconds from `column` to now (0 when there is no row), for "age of the oldest" gauges."""
    return func.coalesce(extract("epoch", func.now() - func.min(column)), 0)


def backlog_gauges(
    table: Table,
    waiting: ColumnElement[bool],
    count: tuple[str, str],
    oldest: tuple[str, str],
    since: str = "created_at",
) -> list[DatabaseGauge]:
    """The two gauges of a backlog watched from the database: how many rows of `table` are
    `waiting`, and how long the oldest has waited (0 when none), so an alert sees a stuck queue.
    `count` and `oldest` are each a gauge's name and documentation; the age is taken from `since`."""
    return [
        DatabaseGauge(*count, select(func.count()).select_from(table).where(waiting)),
        DatabaseGauge(*oldest, select(seconds_since(table.c[since])).where(waiting)),
    ]


def outbox_gauges() -> list[DatabaseGauge]:
    return backlog_gauges(
        outbox_messages,
        outbox_messages.c.published_at.is_(None),
        count=("cagette_outbox_pending_messages", "Outbox rows committed but not yet confirmed by the broker"),
        oldest=(
            "cagette_outbox_oldest_pending_seconds",
            "Age of the oldest outbox row not yet confirmed by the broker (0 when none)",
        ),
    )


class ServiceMetrics:
    """The service's registry, its broker middleware and its scrape-time gauges."""

    def __init__(self, service_name: str, gauges: Sequence[DatabaseGauge] = ()) -> None:
        self.service_name = service_name
        self.registry = CollectorRegistry()
        self.database_gauges = [*outbox_gauges(), *gauges]
        self._gauges = {
            spec.name: Gauge(spec.name, spec.documentation, spec.labels, registry=self.registry)
            for spec in self.database_gauges
        }
        self.parked = Gauge(
            "cagette_parked_messages",
            "Messages waiting in a parking queue (or cagette.unrouted) for an operator",
            ("queue",),
            registry=self.registry,
        )
        self.retrying = Gauge(
            "cagette_retrying_messages",
            "Messages waiting in a consumer's retry queue to be tried again (an outage, or a fact not arrived yet)",
            ("queue",),
            registry=self.registry,
        )
        self.outbox_published = Counter(
            "cagette_outbox_published_messages",
            "Events the outbox relay published and the broker confirmed, by routing key",
            ("routing_key",),
            registry=self.registry,
        )
        self.scrape_errors = Gauge(
            "cagette_metrics_source_up",
            "1 when the last scrape could read the source (database, broker), else 0",
            ("source",),
            registry=self.registry,
        )

    def broker_middleware(self) -> RabbitPrometheusMiddleware:
        return RabbitPrometheusMiddleware(registry=self.registry, app_name=f"cagette-{self.service_name}")

    def instrument(self, app: FastAPI) -> None:
        Instrumentator(registry=self.registry, excluded_handlers=["/metrics", "/health", "/ready"]).instrument(app)
        app.include_router(metrics_router)

    async def refresh(self, service: Service) -> None:
        """Read every scrape-time gauge; a source that fails leaves its gauges as they were."""
        try:
            async with service.database.transaction() as session:
                for spec in self.database_gauges:
                    gauge = self._gauges[spec.name]
                    rows: list[Any] = list((await session.execute(spec.query)).all())
                    if spec.labels:
                        gauge.clear()
                        for row in rows:
                            gauge.labels(*(str(value) for value in row[:-1])).set(float(row[-1] or 0))
                    else:
                        gauge.set(float(rows[0][-1] or 0) if rows else 0.0)
            self.scrape_errors.labels("database").set(1)
        except Exception as exc:
            log.warning("metrics: database gauges not read: %s: %s", type(exc).__name__, exc)
            self.scrape_errors.labels("database").set(0)
        try:
            for name in parking_queue_names(service):
                # declare_queue caches the queue object; declaring it again reads the live count.
                queue = await service.broker.declare_queue(RabbitQueue(name, declare=False))
                declared = await queue.declare()
                self.parked.labels(name).set(declared.message_count or 0)
            for consumer in service.consumers:
                name = consumer.queue.retry_name
                queue = await service.broker.declare_queue(RabbitQueue(name, declare=False))
                declared = await queue.declare()
                self.retrying.labels(name).set(declared.message_count or 0)
            self.scrape_errors.labels("broker").set(1)
        except Exception as exc:
            log.warning("metrics: parking queues not read: %s: %s", type(exc).__name__, exc)
            self.scrape_errors.labels("broker").set(0)


def parking_queue_names(service: Service) -> list[str]:
    return [consumer.queue.parking_name for consumer in service.consumers] + [UNROUTED_QUEUE]


metrics_router = APIRouter(tags=["operations"])


# Documented as what it is (Prometheus' text exposition format), not the API's JSON.
@metrics_router.get(
    "/metrics",
    summary="Prometheus metrics: HTTP, messaging, outbox, parking and service gauges",
    response_class=PlainTextResponse,
)
async def metrics(request: Request) -> Response:
    service: Service = request.app.state.service
    await service.metrics.refresh(service)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
