"""Consumer retry benchmark: the runtime's retry queue beside the per-message retry it replaced
(sleep up to 5 s while holding the consumer, then nack and requeue, counted against the delivery
limit), measured in the same run on the same servers, in two scenarios:

* `some`: every `--every`-th event fails `--failures` times (the handler raises RetryLater), the
  others succeed at once: how long the queue takes to drain, the never-failing events and all.
* `outage`: every event fails while a dependency is down for `--outage` seconds, then all succeed:
  how many real events were parked (dead-lettered) and how long after the outage the queue drained.

    .venv/bin/python bench/consumer/retry.py [--events 1000] [--every 20] [--failures 2] [--outage 8]

Each run gets a fresh RabbitMQ vhost and database (dropped at the end); the events are published
before the consumer starts, so the figures are the consumer's, not the publisher's. Delivery
limit 5, prefetch 64, the retry queue's default delays (1 s doubled up to 15 s).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid
from typing import Literal

from faststream.rabbit import RabbitBroker
from faststream.rabbit.message import RabbitMessage
from faststream.rabbit.schemas import Channel
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Event
from cagette_runtime.broker_admin import BrokerAdmin
from cagette_runtime.consumer import Consumer, ConsumerRunner
from cagette_runtime.db import Database
from cagette_runtime.errors import RetryLater
from cagette_runtime.scratch import messaging_scratch
from cagette_runtime.testing import drain_queue
from cagette_runtime.topology import declare_consumer_queue, events_exchange


class BenchTick(Event):
    event_type: Literal["bench.tick.created"] = "bench.tick.created"
    schema_version: Literal[1] = 1
    number: int


class SleepingRunner(ConsumerRunner):
    """The policy before the retry queue: back off in the consumer, then nack and requeue."""

    async def failed(self, message: RabbitMessage, event: Event, exc: Exception) -> None:
        count = (message.raw_message.headers or {}).get("x-delivery-count")
        attempt = count if isinstance(count, int) else 0
        await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
        await message.nack(requeue=True)


async def run(policy: str, scenario: str, amqp_url: str, database_url: str, args: argparse.Namespace) -> str:
    database = Database(database_url, pool_size=4)
    events = args.events
    remaining = {n: args.failures for n in range(0, events, args.every)} if scenario == "some" else {}
    done: dict[int, float] = {}
    outage_ends = 0.0  # no outage unless the scenario has one

    async def handle(session: AsyncSession, event: BenchTick) -> None:
        if time.monotonic() < outage_ends:
            raise RetryLater("the database is down")
        if remaining.get(event.number, 0) > 0:
            remaining[event.number] -= 1
            raise RetryLater("the ledger does not answer")
        done.setdefault(event.number, time.monotonic())

    consumer = Consumer(f"bench.{policy}", {BenchTick: handle}, delivery_limit=5)
    broker = RabbitBroker(
        amqp_url, default_channel=Channel(prefetch_count=64, publisher_confirms=True), log_level=logging.DEBUG
    )
    runner_class = SleepingRunner if policy == "sleeping" else ConsumerRunner
    runner_class(broker, database, consumer).subscribe()
    await broker.connect()
    await declare_consumer_queue(broker, consumer.queue, BrokerAdmin(amqp_url))
    ticks = [BenchTick(group_id=uuid.uuid4(), number=n) for n in range(events)]
    await asyncio.gather(
        *(
            broker.publish(
                tick.model_dump_json(),
                exchange=events_exchange,
                routing_key=tick.routing_key(),
                message_id=str(tick.event_id),
                persist=True,
            )
            for tick in ticks
        )
    )
    started = time.monotonic()
    if scenario == "outage":
        outage_ends = started + args.outage
    await broker.start()
    parked_queue = consumer.queue.parking_name
    parked: list[object] = []
    while len(done) + len(parked) < events:
        await asyncio.sleep(0.05)
        parked += await drain_queue(amqp_url, parked_queue, expected=events, timeout=0.05)
    finished = time.monotonic()
    await broker.stop()
    await database.dispose()
    if scenario == "some":
        good = max(at for number, at in done.items() if number not in remaining) - started
        return (
            f"some    {policy:<12} {events:>6} events  never-failing ones done in {good:>6.2f} s   "
            f"all done in {finished - started:>6.2f} s   parked {len(parked)}"
        )
    return (
        f"outage  {policy:<12} {events:>6} events  outage {args.outage:.0f} s   "
        f"drained {finished - outage_ends:>6.2f} s after it   processed {len(done)}   parked {len(parked)}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--every", type=int, default=20, help="every N-th event fails transiently")
    parser.add_argument("--failures", type=int, default=2, help="times each of those fails before it succeeds")
    parser.add_argument("--outage", type=float, default=8.0, help="seconds every event fails in the outage scenario")
    args = parser.parse_args()
    run_id = uuid.uuid4().hex[:8]
    vhost = f"cagette-bench-retry-{run_id}"
    results = []
    for scenario, policy in [(s, p) for s in ("some", "outage") for p in ("sleeping", "retry-queue")]:
        name = f"{scenario}-{policy}"
        database = f"bench_retry_{run_id}_{name.replace('-', '_')}"
        async with messaging_scratch(f"{vhost}-{name}", database) as (amqp_url, database_url):
            results.append(await run(policy, scenario, amqp_url, database_url, args))
    print(f"some: every {args.every}th of {args.events} events fails {args.failures} times (RetryLater), then succeeds")
    print(f"outage: every event fails for {args.outage:.0f} s (RetryLater), then succeeds")
    print("baseline: sleeping = back off in the consumer, then nack/requeue (before); retry-queue = now")
    for line in results:
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
