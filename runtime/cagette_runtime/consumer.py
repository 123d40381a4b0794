"""Idempotent, poison-proof consumption, the same for every consumer.

A consumer is declared once, from the handler of each event class it takes (`Consumer(name,
{OrderConfirmed: on_order_confirmed, ...})`, the registry cosmicpython calls EVENT_HANDLERS):
what it accepts, what its queue binds and where each event goes all follow from that mapping.

Every delivery goes through one pipeline (`ConsumerRunner`), whichever runner took it (one
transaction per message here, or a service's own runner such as the ledger's batches):

1. `accept`: the raw body is parsed into its contract; a malformed body, or an event this
   consumer has no handler for, is parked with the reason.
2. In one database transaction the event id is claimed in the inbox (a duplicate stops here)
   and its handler runs.
3. `failed`, when the handler raised (its transaction rolled back): a `Refused` parks the
   message with the reason; a `RetryLater` (or the database being unreachable) sends it to the
   queue's retry queue, from which the broker brings it back after a delay, as often as it
   takes, without counting it against the delivery limit; anything else (`NotYet` included) is
   retried the same way but counted, and parked with the reason once it failed `delivery_limit`
   times. A retry never holds the consumer: the next message is taken at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from faststream import Context
from faststream.middlewares import AckPolicy
from faststream.rabbit import RabbitBroker
from faststream.rabbit.message import RabbitMessage
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Event, UnknownEvent, event_class

from .clock import now
from .correlation import reset_correlation_id, set_correlation_id
from .db import Database, as_retry_later
from .errors import Invalid, NotYet, Refused
from .inbox import claim
from .topology import ConsumerQueue

log = logging.getLogger(__name__)

# A handler takes the consumer's session and an event of the class it is registered for (what it
# returns is ignored).
Handler = Callable[[AsyncSession, Any], Awaitable[object]]

PARKING_REASON_HEADER = "x-parking-reason"
# How many times the message failed on its own account (counted against the delivery limit), and
# how many times it went through the retry queue whatever the cause (sets the next delay).
FAILURES_HEADER = "x-cagette-failures"
RETRIES_HEADER = "x-cagette-retries"
ORIGINAL_ROUTING_KEY_HEADER = "x-original-routing-key"


class EventHandlers:
    """A consumer's registry: the handler of each event class it takes. The key `Event` itself
    takes every event (its queue binds `#`); otherwise an event goes to the handler of the most
    specific class it is an instance of."""

    def __init__(self, handlers: Mapping[type[Event], Handler]) -> None:
        if not handlers:
            raise ValueError("a consumer needs at least one handler")
        self.handlers = dict(handlers)

    @property
    def event_classes(self) -> tuple[type[Event], ...]:
        return tuple(self.handlers)

    def routing_keys(self) -> tuple[str, ...]:
        """The topic patterns the consumer's queue binds (each once, in the registry's order)."""
        keys = ("#" if cls is Event else cls.routing_key() for cls in self.handlers)
        return tuple(dict.fromkeys(keys))

    def handler_for(self, event: Event) -> Handler | None:
        for cls in type(event).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        return None

    def accepts(self, event: Event) -> bool:
        return self.handler_for(event) is not None

    async def dispatch(self, session: AsyncSession, event: Event) -> None:
        handler = self.handler_for(event)
        if handler is None:
            raise Invalid(f"{event.routing_key()} has no handler here")
        await handler(session, event)


class Consumer:
    """A queue (`<service>.<consumer>`) and the handler of each event class it takes.
    `batched`: its deliveries are committed many to a transaction (batching.py), for a consumer
    whose handlers only write to the database. `bound_at_declaration=False`: the queue is
    declared without bindings, the service binds it itself (with what it needs at the time)."""

    def __init__(
        self,
        name: str,
        handlers: Mapping[type[Event], Handler] | EventHandlers,
        *,
        delivery_limit: int = 5,
        batched: bool = False,
        bound_at_declaration: bool = True,
    ) -> None:
        self.name = name
        self.batched = batched
        self.handlers = handlers if isinstance(handlers, EventHandlers) else EventHandlers(handlers)
        self.queue = ConsumerQueue(name, self.handlers.routing_keys(), delivery_limit, bound_at_declaration)


def _header_count(message: RabbitMessage, name: str) -> int:
    value = (message.raw_message.headers or {}).get(name)
    return value if isinstance(value, int) and value >= 0 else 0


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


async def raw_body(message: RabbitMessage) -> bytes:
    """The decoder of every consumer: FastStream would decode JSON itself and fail on what it
    cannot read (never acking it); parse_event does it, so a malformed body is parked instead."""
    return message.body


OnMessage = Callable[[RabbitMessage], Awaitable[None]]


class ConsumerRunner:
    """Binds a Consumer to the broker and the service database: the pipeline every delivery
    goes through (accept, claim and handle, then ack, park or retry)."""

    def __init__(
        self,
        broker: RabbitBroker,
        database: Database,
        consumer: Consumer,
        *,
        retry_delay: float = 1.0,
        retry_max_delay: float = 15.0,
    ) -> None:
        self.broker = broker
        self.database = database
        self.consumer = consumer
        self.name = consumer.queue.name
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay

    def subscribe(self, on_message: OnMessage | None = None, *, title: str | None = None) -> None:
        """Attach `on_message` (default: `process`) to the consumer's queue, with manual acks and
        the raw-body decoder. A runner of its own (the ledger's batches) subscribes through here."""
        handle = on_message or self.process

        async def receive(message: RabbitMessage = Context("message")) -> None:
            await handle(message)

        self.broker.subscriber(
            self.consumer.queue.queue(), ack_policy=AckPolicy.MANUAL, decoder=raw_body, title=title or self.name
        )(receive)

    async def accept(self, message: RabbitMessage) -> Event | None:
        """The delivery's event, or None once the message was parked: its body is not a valid
        event, or this consumer has no handler for it."""
        try:
            event = parse_event(message.body)
            if not self.consumer.handlers.accepts(event):
                raise MalformedMessage(f"{event.routing_key()} is not handled by {self.name}")
        except MalformedMessage as exc:
            await self.park(message, str(exc))
            return None
        return event

    async def process(self, message: RabbitMessage) -> None:
        token = set_correlation_id(message.correlation_id or None)
        try:
            event = await self.accept(message)
            if event is None:
                return
            set_correlation_id(event.correlation_id)
            try:
                async with self.database.transaction() as session:
                    if not await claim(session, self.name, event):
                        log.info("duplicate event %s ignored by %s", event.event_id, self.name)
                    else:
                        await self.consumer.handlers.dispatch(session, event)
            except Exception as exc:
                await self.failed(message, event, exc)
                return
            await message.ack()
        finally:
            reset_correlation_id(token)

    async def failed(self, message: RabbitMessage, event: Event, exc: Exception) -> None:
        """Park, or send to the retry queue, a message whose handling raised `exc` (rolled back)."""
        if isinstance(exc, Refused):
            await self.park(message, f"refused: {exc.reason}")
            return
        if (transient := as_retry_later(exc)) is not None:
            log.warning("event %s waits in %s (not counted): %s", event.event_id, self.name, transient.reason)
            await self.retry(message, counted=False)
            return
        failures = _header_count(message, FAILURES_HEADER) + 1
        limit = self.consumer.queue.delivery_limit
        if isinstance(exc, NotYet):
            log.warning("event %s waits in %s (%d of %d): %s", event.event_id, self.name, failures, limit, exc)
        else:
            log.error("event %s failed in %s (%d of %d)", event.event_id, self.name, failures, limit, exc_info=exc)
        if failures >= limit:
            await self.park(message, f"failed {failures} times (delivery limit {limit}): {type(exc).__name__}: {exc}")
        else:
            await self.retry(message, counted=True)

    def delay(self, retries: int) -> float:
        """Seconds a message waits in the retry queue before its `retries + 1`-th retry."""
        return min(self.retry_max_delay, self.retry_delay * 2 ** min(retries, 30))

    async def retry(self, message: RabbitMessage, *, counted: bool) -> None:
        """Republish the message to the retry queue with a delay (its TTL there: on expiry the
        broker dead-letters it back to the consumer's queue), then ack it. Nothing waits here."""
        raw = message.raw_message
        retries = _header_count(message, RETRIES_HEADER)
        headers = {key: value for key, value in (raw.headers or {}).items() if key != "x-delivery-count"}
        headers |= {
            RETRIES_HEADER: retries + 1,
            FAILURES_HEADER: _header_count(message, FAILURES_HEADER) + (1 if counted else 0),
            ORIGINAL_ROUTING_KEY_HEADER: self._routing_key(message),
        }
        await self._move(message, self.consumer.queue.retry_name, headers, expiration=self.delay(retries))

    async def park(self, message: RabbitMessage, reason: str) -> None:
        """Move the message to the parking queue with the reason, then ack it."""
        log.error("parking message %s from %s: %s", message.message_id, self.name, reason)
        headers = {
            **(message.raw_message.headers or {}),
            PARKING_REASON_HEADER: reason[:2000],
            "x-parked-by": self.name,
            "x-parked-at": now().isoformat(),
            ORIGINAL_ROUTING_KEY_HEADER: self._routing_key(message),
        }
        await self._move(message, self.consumer.queue.parking_name, headers)

    async def _move(
        self, message: RabbitMessage, queue: str, headers: dict[str, Any], expiration: float | None = None
    ) -> None:
        """Publish the message's body to `queue` (confirmed), then ack the delivery."""
        raw = message.raw_message
        await self.broker.publish(
            raw.body,
            queue=queue,
            persist=True,
            mandatory=True,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            content_type=raw.content_type,
            headers=headers,
            expiration=expiration,
        )
        await message.ack()

    def _routing_key(self, message: RabbitMessage) -> str:
        """The key the event was published with (a retried message comes back under the queue's name)."""
        original = (message.raw_message.headers or {}).get(ORIGINAL_ROUTING_KEY_HEADER)
        return original if isinstance(original, str) else message.raw_message.routing_key or ""
