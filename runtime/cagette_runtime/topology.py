"""Broker topology, declared the same way by every service.

- `cagette.events`: the durable topic exchange every event is published to.
- `cagette.events.log`: a stream bound to `#` on `cagette.events`, the replayable log of every
  event (read from an offset or a timestamp; retention by age and size from the settings).
- per consumer, a durable quorum queue `<service>.<consumer>` with a delivery limit whose
  dead-letter route (exchange `cagette.dead-letter`, routing key = queue name) leads to the
  parking queue `<service>.<consumer>.parking`. Messages the consumer refuses are parked there
  with the reason in their headers; messages that keep failing reach it through the limit.
  The limit, the dead-letter route and the overflow are a RabbitMQ policy (policies.py), not
  queue arguments, so an operator changes them on a live broker.
- per consumer, its retry queue `<service>.<consumer>.retry`, which nobody consumes: a message
  to try again later is published there with a TTL (its delay) and, once it expires, the broker
  dead-letters it back to the consumer's queue through the default exchange. That route follows
  from the names and never changes, so it is the queue's arguments, not a policy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aio_pika
from aiormq.exceptions import ChannelPreconditionFailed
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas.queue import QueueType

from cagette_contracts.routing import EVENTS_EXCHANGE

from .broker_admin import BrokerAdmin, Policy, consumer_queue_policy

DEAD_LETTER_EXCHANGE = "cagette.dead-letter"
# Where the outbox relay parks events that stayed unroutable for its whole grace period.
UNROUTED_QUEUE = "cagette.unrouted"
# Every event, kept for replay (docs/events.md). Also what makes every event routable: an
# unroutable event then means a misconfigured broker.
EVENT_LOG_STREAM = "cagette.events.log"

events_exchange = RabbitExchange(EVENTS_EXCHANGE, type=ExchangeType.TOPIC, durable=True)
dead_letter_exchange = RabbitExchange(DEAD_LETTER_EXCHANGE, type=ExchangeType.DIRECT, durable=True)

log = logging.getLogger(__name__)


async def _declare_without_arguments(amqp_url: str, name: str) -> None:
    """Declare the quorum queue with no setting of its own (its policy has them). A queue created
    before policies, with its settings as arguments, refuses that declaration: it is kept as it
    is (its own arguments win over the policy) until an operator recreates it (runbook). On a
    connection of its own, since the refusal closes the channel."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
    except ChannelPreconditionFailed as exc:
        log.warning(
            "queue %s keeps the arguments it was created with; its policy applies once it is recreated: %s", name, exc
        )
    finally:
        await connection.close()


@dataclass(frozen=True)
class ConsumerQueue:
    """A consumer's queue: its name, the routing keys (topic patterns) it may bind, its limit;
    bound with them when declared unless `bound_at_declaration` is False (its service binds it)."""

    name: str
    routing_keys: tuple[str, ...]
    delivery_limit: int = 5
    bound_at_declaration: bool = True

    @property
    def parking_name(self) -> str:
        return f"{self.name}.parking"

    def queue(self) -> RabbitQueue:
        """The queue as its subscriber sees it: declared (with its policy) by
        declare_consumer_queue before the broker starts, so the subscriber only attaches to it."""
        return RabbitQueue(self.name, queue_type=QueueType.QUORUM, durable=True, declare=False)

    def policy(self) -> Policy:
        return consumer_queue_policy(
            self.name,
            delivery_limit=self.delivery_limit,
            dead_letter_exchange=DEAD_LETTER_EXCHANGE,
            dead_letter_routing_key=self.name,
        )

    def parking_queue(self) -> RabbitQueue:
        return RabbitQueue(self.parking_name, queue_type=QueueType.QUORUM, durable=True)

    @property
    def retry_name(self) -> str:
        return f"{self.name}.retry"

    def retry_queue(self) -> RabbitQueue:
        return RabbitQueue(
            self.retry_name,
            queue_type=QueueType.QUORUM,
            durable=True,
            arguments={
                # An expired message goes back to the consumer's queue (default exchange: by name).
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.name,
                # Never dropped on the way back (at-least-once needs reject-publish overflow).
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )


async def declare_exchanges(broker: RabbitBroker) -> None:
    await broker.declare_exchange(events_exchange)
    await broker.declare_exchange(dead_letter_exchange)
    await broker.declare_queue(RabbitQueue(UNROUTED_QUEUE, queue_type=QueueType.QUORUM, durable=True))


async def declare_consumer_queue(broker: RabbitBroker, consumer: ConsumerQueue, policies: BrokerAdmin) -> None:
    """Set the queue's policy, declare the queue, its parking and retry queues, the exchanges and
    bindings (all idempotent)."""
    await declare_exchanges(broker)
    parking = await broker.declare_queue(consumer.parking_queue())
    await parking.bind(DEAD_LETTER_EXCHANGE, routing_key=consumer.name)
    await broker.declare_queue(consumer.retry_queue())
    await policies.apply(consumer.policy())
    await _declare_without_arguments(policies.amqp_url, consumer.name)
    queue = await broker.declare_queue(consumer.queue())
    if not consumer.bound_at_declaration:
        log.info("declared queue %s (its service binds it)", consumer.name)
        return
    for routing_key in consumer.routing_keys:
        await queue.bind(EVENTS_EXCHANGE, routing_key=routing_key)
    log.info("declared queue %s bound to %s", consumer.name, ", ".join(consumer.routing_keys))


def event_log_queue(max_age: str, max_length_bytes: int, segment_bytes: int) -> RabbitQueue:
    """The event log stream. RabbitMQ refuses to redeclare a queue with other arguments: change
    the retention of an existing log with a policy (docs/events.md)."""
    return RabbitQueue(
        EVENT_LOG_STREAM,
        queue_type=QueueType.STREAM,
        durable=True,
        arguments={
            "x-max-age": max_age,
            "x-max-length-bytes": max_length_bytes,
            "x-stream-max-segment-size-bytes": segment_bytes,
        },
    )


async def declare_event_log(broker: RabbitBroker, max_age: str, max_length_bytes: int, segment_bytes: int) -> None:
    log_queue = await broker.declare_queue(event_log_queue(max_age, max_length_bytes, segment_bytes))
    await log_queue.bind(EVENTS_EXCHANGE, routing_key="#")
