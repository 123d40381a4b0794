"""Idempotent, poison-proof consumption, the same for every consumer.

For each message: parse it into its contract (a malformed one is parked with the reason), then
in one database transaction record its event id in the inbox and run the handler. A duplicate
(the id is already in the inbox) has no second effect. A `Refused` from the handler parks the
message with the reason; any other error is retried (nack + requeue) until the queue's
delivery limit dead-letters it to the parking queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from faststream import Context
from faststream.middlewares import AckPolicy
from faststream.rabbit import RabbitBroker
from faststream.rabbit.message import RabbitMessage
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Event, UnknownEvent, event_class

from .correlation import reset_correlation_id, set_correlation_id
from .db import Database
from .errors import Refused, RetryLater
from .tables import inbox_messages
from .topology import ConsumerQueue

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Event], Awaitable[None]]

PARKING_REASON_HEADER = "x-parking-reason"


def delivery_count(message: RabbitMessage) -> int:
    """How many times the broker delivered this message before (quorum queues' x-delivery-count)."""
    count = (message.raw_message.headers or {}).get("x-delivery-count")
    return count if isinstance(count, int) else 0


class MalformedMessage(ValueError):
    pass


def parse_event(body: bytes) -> Event:
    """The contract instance for a message body, or MalformedMessage saying what is wrong."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessage(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedMessage("body is not a JSON object")
    try:
        cls = event_class(str(data.get("event_type")), int(data.get("schema_version", 0)))
        return cls.model_validate(data)
    except (UnknownEvent, TypeError, ValueError) as exc:
        detail = exc.errors(include_url=False) if isinstance(exc, ValidationError) else str(exc)
        raise MalformedMessage(f"not a valid event: {detail}") from None


async def claim(session: AsyncSession, consumer: str, event: Event) -> bool:
    """Record the event as processed by `consumer` in this transaction. False if it already was."""
    result = await session.execute(
        pg_insert(inbox_messages)
        .values(consumer=consumer, event_id=event.event_id)
        .on_conflict_do_nothing()
        .returning(inbox_messages.c.event_id)
    )
    return result.first() is not None


async def _raw_body(message: RabbitMessage) -> bytes:
    # FastStream would decode JSON itself and drop what it cannot read; parse_event does it
    # so a malformed body is parked with its reason instead.
    return message.body


@dataclass(frozen=True)
class Consumer:
    queue: ConsumerQueue
    handler: Handler
    accepts: tuple[type[Event], ...] = ()


class ConsumerRunner:
    """Binds a Consumer to the broker and the service database."""

    def __init__(self, broker: RabbitBroker, database: Database, consumer: Consumer) -> None:
        self.broker = broker
        self.database = database
        self.consumer = consumer
        self.name = consumer.queue.name

    def subscribe(self) -> None:
        async def on_message(message: RabbitMessage = Context("message")) -> None:
            await self.process(message)

        self.broker.subscriber(
            self.consumer.queue.queue(), ack_policy=AckPolicy.MANUAL, decoder=_raw_body, title=self.name
        )(on_message)

    async def process(self, message: RabbitMessage) -> None:
        token = set_correlation_id(message.correlation_id or None)
        try:
            try:
                event = parse_event(message.body)
                if self.consumer.accepts and not isinstance(event, self.consumer.accepts):
                    raise MalformedMessage(f"{event.routing_key()} is not handled by {self.name}")
            except MalformedMessage as exc:
                await self.park(message, str(exc))
                return
            set_correlation_id(event.correlation_id)
            try:
                async with self.database.transaction() as session:
                    if not await claim(session, self.name, event):
                        log.info("duplicate event %s ignored by %s", event.event_id, self.name)
                        await message.ack()
                        return
                    await self.consumer.handler(session, event)
            except Refused as exc:
                await self.park(message, f"refused: {exc.reason}")
                return
            except Exception as exc:
                attempt = delivery_count(message)
                if isinstance(exc, RetryLater):
                    log.warning("event %s waits in %s (attempt %d): %s", event.event_id, self.name, attempt + 1, exc)
                else:
                    log.exception(
                        "event %s failed in %s (attempt %d), will retry", event.event_id, self.name, attempt + 1
                    )
                # Back off a little so a short outage does not burn the delivery limit at once.
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
                await message.nack(requeue=True)
                return
            await message.ack()
        finally:
            reset_correlation_id(token)

    async def park(self, message: RabbitMessage, reason: str) -> None:
        """Move the message to the parking queue with the reason, then ack it."""
        raw = message.raw_message
        log.error("parking message %s from %s: %s", message.message_id, self.name, reason)
        await self.broker.publish(
            raw.body,
            queue=self.consumer.queue.parking_name,
            persist=True,
            mandatory=True,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            content_type=raw.content_type,
            headers={
                **(raw.headers or {}),
                PARKING_REASON_HEADER: reason[:2000],
                "x-parked-by": self.name,
                "x-parked-at": datetime.now(UTC).isoformat(),
                "x-original-routing-key": raw.routing_key or "",
            },
        )
        await message.ack()
