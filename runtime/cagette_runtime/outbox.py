"""Transactional outbox (docs/decisions/0001-outbox.md).

`add()` writes the event row in the caller's transaction, so an event exists if and only if the
state change committed. The relay publishes pending rows persistent, mandatory, with publisher
confirms, and marks a row published only after the broker confirmed it. A row the broker did
not confirm stays pending and is retried with backoff; one it returned as unroutable (no queue
bound yet, e.g. a subscriber still starting) is retried the same way for a grace period, then
parked in the `cagette.unrouted` queue with the reason, so nothing is lost or retried forever. Several
relays (replicas) share the work through FOR UPDATE SKIP LOCKED.

The relay publishes on the broker's own channel (publisher confirms, returns raise) with aio-pika
directly, not through FastStream's publish pipeline: the rows are already encoded and carry
their trace context, so the per-message middlewares (metrics, tracing, encoding) only cost
time on the hottest path; `cagette_outbox_published_messages_total` counts what it published.

The backoff is for a broker that does not confirm, not a penalty: as soon as the broker is back
(the connection reconnected, or a row of a failing relay confirmed) every row still waiting out
a backoff from the outage is due again at once, so nothing waits up to the longest backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from datetime import timedelta
from typing import Any, NotRequired, TypedDict
from uuid import UUID

import aio_pika
from faststream.rabbit import RabbitBroker, RabbitExchange
from prometheus_client import Counter as MetricCounter
from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Event

from . import clock
from .background import BackgroundLoop
from .correlation import peek_correlation_id
from .db import OUTBOX_WRITTEN, Database
from .tables import outbox_messages
from .topology import UNROUTED_QUEUE, events_exchange
from .tracing import current_trace_carrier

log = logging.getLogger(__name__)


async def add(session: AsyncSession, *events: Event) -> None:
    """Record events to publish once the caller's transaction commits. Within a request that
    holds an `Idempotency-Key`, the key is marked as having taken effect in the same transaction
    (runtime/idempotency.py: bind)."""
    if not events:
        return
    from .idempotency import bind  # late: idempotency needs the HTTP side, the outbox does not

    await bind(session)
    await session.execute(
        insert(outbox_messages),
        [
            {
                "event_id": event.event_id,
                "routing_key": event.routing_key(),
                "body": event.model_dump_json(),
                "correlation_id": event.correlation_id,
                # With the action's W3C trace context, so the relay publishes within its trace.
                "headers": {
                    "x-event-type": event.routing_key(),
                    "x-schema-version": event.version(),
                    **current_trace_carrier(event.correlation_id),
                },
            }
            for event in events
        ],
    )
    session.info[OUTBOX_WRITTEN] = True


class EventContext(TypedDict):
    """The envelope fields a new event takes from the action in progress: its group and, when one
    is in progress, the correlation id of the cause (else the event draws a new one)."""

    group_id: UUID
    correlation_id: NotRequired[str]


def event_context(group_id: UUID) -> EventContext:
    """Envelope fields for a new event of `group_id` caused by the action in progress."""
    context = EventContext(group_id=group_id)
    if correlation_id := peek_correlation_id():
        context["correlation_id"] = correlation_id
    return context


class OncePer:
    """Lets one log line per key through each `interval` seconds and counts the ones it held
    back, so an event type nobody subscribes to cannot flood the log."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def allow(self, key: str) -> int | None:
        """None to stay quiet, else how many lines for `key` were held back since the last one."""
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            self._held[key] += 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


class OutboxRelay(BackgroundLoop):
    name = "outbox-relay"

    def __init__(
        self,
        database: Database,
        broker: RabbitBroker,
        *,
        batch_size: int = 200,
        poll_interval: float = 0.5,
        max_backoff: float = 60.0,
        publish_timeout: float = 10.0,
        unroutable_grace: float = 300.0,
        unroutable_log_interval: float = 60.0,
        published: MetricCounter | None = None,
        app_id: str | None = None,
    ) -> None:
        super().__init__(poll_interval)
        self.published = published
        self.app_id = app_id
        self.unroutable_lines = OncePer(unroutable_log_interval)
        self.unroutable_grace = unroutable_grace
        self.database = database
        self.broker = broker
        self.batch_size = batch_size
        self.max_backoff = max_backoff
        self.publish_timeout = publish_timeout
        # True from a pass that met a broker failure (not an unroutable event) until the broker is back.
        self.failing = False
        self._broker_back = False
        database.on_outbox_commit(self.wake)

    def broker_reconnected(self, connection: object = None) -> None:
        """The broker connection is back (FastStream's on_reconnected): rows waiting out a
        backoff from the outage are published at the next pass, which starts now."""
        self._broker_back = True
        self.wake()

    async def run_once(self) -> bool:
        return await self.relay_once() >= self.batch_size

    async def relay_once(self) -> int:
        """Publish one batch of due rows. Returns how many were confirmed by the broker."""
        if self._broker_back:
            self._broker_back = False
            await self.end_backoff()
        async with self.database.transaction() as session:
            rows = (
                await session.execute(
                    select(outbox_messages)
                    .where(outbox_messages.c.published_at.is_(None))
                    .where(outbox_messages.c.next_attempt_at <= func.now())  # the database's clock, shared by replicas
                    .order_by(outbox_messages.c.id)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            try:
                events = await self.broker.declare_exchange(events_exchange)
                default = await self.broker.declare_exchange(RabbitExchange(""))
            except Exception as exc:  # no channel: the broker is down; the rows wait for the next pass
                outcomes: list[BaseException | None] = [exc] * len(rows)
            else:
                outcomes = await asyncio.gather(
                    *(self._deliver(row, events, default) for row in rows), return_exceptions=True
                )
            confirmed = [row.id for row, outcome in zip(rows, outcomes, strict=True) if outcome is None]
            failed = any(
                outcome is not None and not isinstance(outcome, ParkedUnroutable) and not _is_unroutable(outcome)
                for outcome in outcomes
            )
            if confirmed and self.failing and not failed:
                self.broker_reconnected()  # the broker confirms again: the other rows need not wait
            self.failing = failed
            if confirmed:
                await session.execute(
                    update(outbox_messages).where(outbox_messages.c.id.in_(confirmed)).values(published_at=func.now())
                )
                if self.published is not None:
                    for row, outcome in zip(rows, outcomes, strict=True):
                        if outcome is None:
                            self.published.labels(row.routing_key).inc()
            for row, outcome in zip(rows, outcomes, strict=True):
                if isinstance(outcome, ParkedUnroutable):
                    await session.execute(
                        update(outbox_messages)
                        .where(outbox_messages.c.id == row.id)
                        .values(published_at=func.now(), attempts=row.attempts + 1, last_error=str(outcome))
                    )
                elif outcome is not None:
                    # Capped exponential backoff with jitter, so replicas do not retry in step.
                    delay = min(self.max_backoff, 0.5 * 2 ** min(row.attempts, 16)) * random.uniform(0.8, 1.0)
                    self._warn(row, delay, outcome)
                    await session.execute(
                        update(outbox_messages)
                        .where(outbox_messages.c.id == row.id)
                        .values(
                            attempts=row.attempts + 1,
                            next_attempt_at=func.now() + timedelta(seconds=delay),
                            last_error=_describe(outcome)[:1000],
                        )
                    )
            return len(confirmed)

    async def end_backoff(self) -> int:
        """Make every pending row that waits out a backoff (not an unroutable one) due now."""
        async with self.database.transaction() as session:
            result = await session.execute(
                update(outbox_messages)
                .where(outbox_messages.c.published_at.is_(None))
                .where(outbox_messages.c.next_attempt_at > func.now())
                .where(~func.coalesce(outbox_messages.c.last_error, "").startswith("unroutable"))
                .values(next_attempt_at=func.now())
            )
        count = int(getattr(result, "rowcount", 0) or 0)
        if count:
            log.info("broker back: %d outbox event(s) no longer wait out their backoff", count)
        return count

    def _warn(self, row: Row[Any], delay: float, outcome: BaseException) -> None:
        if not _is_unroutable(outcome):
            log.warning(
                "event %s (%s) not confirmed, retry in %.1fs: %s",
                row.event_id,
                row.routing_key,
                delay,
                _describe(outcome),
            )
        elif (held := self.unroutable_lines.allow(row.routing_key)) is not None:
            log.warning(
                "%s events are unroutable (no queue bound yet), retried with backoff for %.0fs before parking%s",
                row.routing_key,
                self.unroutable_grace,
                f" ({held} similar lines held back)" if held else "",
            )

    async def _deliver(
        self, row: Row[Any], events: aio_pika.abc.AbstractExchange, default: aio_pika.abc.AbstractExchange
    ) -> None:
        """Publish the row; an event still unroutable after the grace period is parked in the
        `cagette.unrouted` queue (raising ParkedUnroutable) instead of being retried forever."""
        try:
            await self._publish(row, exchange=events, routing_key=row.routing_key, headers=row.headers)
        except Exception as exc:
            age = (clock.now() - row.created_at).total_seconds()
            if not _is_unroutable(exc) or age < self.unroutable_grace:
                raise
            reason = f"unroutable for {age:.0f}s: no queue is bound to {row.routing_key}"
            await self._publish(
                row,
                exchange=default,
                routing_key=UNROUTED_QUEUE,
                headers={**row.headers, "x-unroutable-reason": reason, "x-original-routing-key": row.routing_key},
            )
            if (held := self.unroutable_lines.allow(f"parked:{row.routing_key}")) is not None:
                more = f" ({held} more parked since the last line)" if held else ""
                log.error(
                    "event %s (%s) parked in %s: %s%s", row.event_id, row.routing_key, UNROUTED_QUEUE, reason, more
                )
            raise ParkedUnroutable(f"{reason}; parked in {UNROUTED_QUEUE}") from None

    async def _publish(
        self, row: Row[Any], *, exchange: aio_pika.abc.AbstractExchange, routing_key: str, headers: dict[str, Any]
    ) -> None:
        message = aio_pika.Message(
            row.body.encode(),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(row.event_id),
            correlation_id=row.correlation_id,
            content_type="application/json",
            headers=headers,  # with the action's traceparent: consumers join its trace
            timestamp=row.created_at,
            app_id=self.app_id,
        )
        confirmation = await exchange.publish(
            message, routing_key=routing_key, mandatory=True, timeout=self.publish_timeout
        )
        # aiormq answers Basic.Ack when confirmed; a Nack or nothing means not stored.
        if type(confirmation).__name__ != "Ack":
            raise RuntimeError(f"broker did not confirm: {confirmation!r}")


class ParkedUnroutable(Exception):
    """The event could not be routed for the whole grace period and was parked instead."""


def _is_unroutable(outcome: object) -> bool:
    return "NO_ROUTE" in str(outcome) or type(outcome).__name__ == "DeliveryError"


def _describe(outcome: object) -> str:
    if _is_unroutable(outcome):
        return "unroutable: the broker returned it, no queue is bound for this routing key yet"
    return f"{type(outcome).__name__}: {outcome}"
