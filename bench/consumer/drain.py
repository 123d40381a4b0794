"""Does every consumer keep up with the ledger? Each service's consumers drain the same queued
orders, one service at a time, on the local servers (isolated: a fresh vhost and databases).

    .venv/bin/python -m bench.consumer.drain [--orders 2000] [--members 200] [--runs 1]

For each run, twice: with the consumers batched as deployed (batching.py), then with every
consumer taking one transaction per message (`CAGETTE_CONSUMER_BATCH_SIZE=1`, the runner before
batching; the ledger keeps its own batches): the baseline measured in the same run.

1. ledger, payments and notifications start (their queues bound); the group and its members are
   announced and consumed;
2. every service is paused (SIGSTOP) and `--orders` cheque orders (`OrderConfirmed`, two lines)
   are published, as orders would have during a burst;
3. the services are resumed one at a time, ledger first: each drains what queued for it (the
   orders, and the events the services resumed before it published meanwhile: the ledger's
   postings and balances, payments' declared payments), alone on the machine: each is paused
   again once drained.

Printed per consumer: the messages it took, orders/s (orders / time from its resume to its last
commit, read from its inbox) and the ratio to the ledger's orders/s (target >= 1: it keeps up).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aio_pika
import asyncpg

from bench.measure import Profiler, smtp_sink
from bench.orders.run import PROFILED_LIBRARIES
from cagette_contracts import (
    GroupSettingsChanged,
    MemberJoined,
    Money,
    OrderConfirmed,
    OrderLine,
    PaymentMethod,
    Role,
)
from cagette_contracts.routing import EVENTS_EXCHANGE
from cagette_runtime.db import drop_database
from cagette_runtime.devstack import Stack
from cagette_runtime.settings import DEFAULT_AMQP_URL, DEFAULT_POSTGRES_SERVER_URL
from cagette_runtime.testing import create_vhost, delete_vhost, free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ledger", "payments", "notifications")
CONSUMERS = {
    "ledger": ("ledger.postings",),
    "payments": ("payments.orders",),
    "notifications": ("notifications.events", "notifications.webhooks"),
}


@dataclass
class Drained:
    consumer: str
    messages: int
    seconds: float
    orders: int

    @property
    def orders_per_second(self) -> float:
        return self.orders / self.seconds if self.seconds > 0 else 0.0


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def publish(exchange: aio_pika.abc.AbstractExchange, events: list) -> None:
    async def one(event) -> None:
        await exchange.publish(
            aio_pika.Message(
                event.model_dump_json().encode(),
                message_id=str(event.event_id),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=event.routing_key(),
        )

    for start in range(0, len(events), 500):
        await asyncio.gather(*(one(event) for event in events[start : start + 500]))


async def processed(database: asyncpg.Connection, consumer: str, since: float) -> tuple[int, float]:
    """How many messages `consumer` committed since the database time `since`, and the time of the last."""
    row = await database.fetchrow(
        "SELECT count(*) AS n, extract(epoch FROM max(processed_at)) AS last FROM inbox_messages"
        " WHERE consumer = $1 AND processed_at >= to_timestamp($2)",
        consumer,
        since,
    )
    return int(row["n"]), float(row["last"] or since)


COUNT = "SELECT count(*) FROM inbox_messages WHERE consumer = $1"


async def drain(database: asyncpg.Connection, consumers: tuple[str, ...], quiet: float = 1.5) -> dict[str, int]:
    """Wait until none of `consumers` committed anything for `quiet` seconds, counted from the
    first commit seen (a profiler attaching may hold the process a moment first)."""
    start = {c: await database.fetchval(COUNT, c) for c in consumers}
    counts, still_since, moved = start, time.monotonic(), False
    while not moved or time.monotonic() - still_since < quiet:
        await asyncio.sleep(0.25)
        now = {c: await database.fetchval(COUNT, c) for c in consumers}
        if now != counts:
            counts, still_since, moved = now, time.monotonic(), True
        elif not moved and time.monotonic() - still_since > 30:
            break  # nothing came for this consumer at all
    return counts


async def one_pass(args: argparse.Namespace, batched: bool) -> list[Drained]:
    amqp_base = os.environ.get("CAGETTE_AMQP_URL", DEFAULT_AMQP_URL)
    postgres = os.environ.get("CAGETTE_POSTGRES_URL", DEFAULT_POSTGRES_SERVER_URL)
    run_id = f"drain{uuid.uuid4().hex[:8]}"
    vhost = f"cagette-bench-{run_id}"
    amqp_url = await create_vhost(amqp_base, vhost)
    smtp_port = free_port()
    sink = smtp_sink(smtp_port)
    env = {"CAGETTE_LOG_LEVEL": "WARNING", "CAGETTE_SMTP_HOST": "127.0.0.1", "CAGETTE_SMTP_PORT": str(smtp_port)}
    if not batched:
        env["CAGETTE_CONSUMER_BATCH_SIZE"] = "1"
    stack = Stack(
        amqp_url=amqp_url,
        postgres_url=postgres,
        database_prefix=run_id,
        ports={service: free_port() for service in SERVICES},
        extra_env=env,
        log_dir=ROOT / "var" / "bench-logs" / run_id,
    )
    connection: aio_pika.abc.AbstractRobustConnection | None = None
    databases: dict[str, asyncpg.Connection] = {}
    try:
        await stack.start()
        for name in SERVICES:
            databases[name] = await asyncpg.connect(dsn(stack.database_url(name)))
        connection = await aio_pika.connect_robust(amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)

        group_id = uuid.uuid4()
        people = [uuid.uuid4() for _ in range(args.members)]
        await publish(
            exchange,
            [
                GroupSettingsChanged(
                    group_id=group_id,
                    name="Bench group",
                    currency="EUR",
                    payments_enabled=True,
                    payment_methods=[PaymentMethod.CHEQUE, PaymentMethod.CASH],
                    cheque_payee="AMAP Bench",
                ),
                *(
                    MemberJoined(
                        group_id=group_id,
                        member_id=person,
                        role=Role.MEMBER,
                        name=f"Member {n}",
                        email=f"member{n}@example.org",
                    )
                    for n, person in enumerate(people)
                ),
            ],
        )
        for name in SERVICES:
            await drain(databases[name], CONSUMERS[name])

        for service in stack.services.values():
            assert service.process is not None
            service.process.send_signal(signal.SIGSTOP)
        price = Money(amount=1250, currency="EUR")
        distributions = [uuid.uuid4() for _ in range(-(-args.orders // args.members))]
        orders = [
            OrderConfirmed(
                group_id=group_id,
                order_id=uuid.uuid4(),
                member_id=people[n % args.members],
                distribution_id=distributions[n // args.members],
                payment_method=PaymentMethod.CHEQUE,
                lines=[
                    OrderLine(
                        product_name="Panier de légumes", quantity=Decimal(1), unit_price=price, line_total=price
                    ),
                    OrderLine(
                        product_name="Œufs (6)",
                        quantity=Decimal(2),
                        unit_price=Money(amount=240, currency="EUR"),
                        line_total=Money(amount=480, currency="EUR"),
                    ),
                ],
                total=Money(amount=1730, currency="EUR"),
            )
            for n in range(args.orders)
        ]
        await publish(exchange, orders)

        results = []
        for name in SERVICES:
            database = databases[name]
            since = float(await database.fetchval("SELECT extract(epoch FROM clock_timestamp())"))
            process = stack.services[name].process
            assert process is not None
            process.send_signal(signal.SIGCONT)
            # py-spy attaches to a running process (a stopped one stays stopped under its ptrace).
            profiler = Profiler(process.pid, args.profile / f"{name}.raw") if args.profile and batched else None
            await drain(database, CONSUMERS[name])
            if profiler is not None:
                profiler.stop()
                (args.profile / f"{name}.txt").write_text(profiler.summary(top=45, ours=PROFILED_LIBRARIES) + "\n")
            process.send_signal(signal.SIGSTOP)  # the next service drains alone
            for consumer in CONSUMERS[name]:
                count, last = await processed(database, consumer, since)
                results.append(Drained(consumer, count, last - since, args.orders))
        return results
    finally:
        for service in stack.services.values():
            if service.process is not None and service.process.returncode is None:
                service.process.send_signal(signal.SIGCONT)
        for database in databases.values():
            await database.close()
        if connection is not None:
            await connection.close()
        await stack.stop()
        sink.terminate()
        sink.wait(10)
        for name in SERVICES:
            await drop_database(stack.database_url(name))
        await delete_vhost(amqp_base, vhost)


def report(number: int, batched: list[Drained], single: list[Drained]) -> None:
    ledger = next(d for d in batched if d.consumer == "ledger.postings").orders_per_second
    print(f"\n== run {number}: {batched[0].orders} orders drained, one service at a time ==")
    print(f"{'consumer':<24}{'messages':>9}{'orders/s':>10}{'vs ledger':>11}   {'per-message orders/s':>21}{'gain':>7}")
    for ours, before in zip(batched, single, strict=True):
        if ours.messages == 0:
            # notifications.webhooks is bound only to what an enabled endpoint wants: none here.
            print(f"{ours.consumer:<24}{0:>9}   nothing queued (no endpoint wants these events)")
            continue
        print(
            f"{ours.consumer:<24}{ours.messages:>9}{ours.orders_per_second:>10.0f}"
            f"{ours.orders_per_second / ledger:>10.2f}x   {before.orders_per_second:>21.0f}"
            f"{ours.orders_per_second / max(before.orders_per_second, 1e-9):>6.2f}x"
        )
    print("target: every consumer >= 1.00x the ledger's orders/s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="py-spy each service while it drains (batched); summaries here")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    ratios: dict[str, list[float]] = {}
    for number in range(1, args.runs + 1):
        batched = await one_pass(args, batched=True)
        single = await one_pass(args, batched=False)
        report(number, batched, single)
        ledger = next(d for d in batched if d.consumer == "ledger.postings").orders_per_second
        for drained in (d for d in batched if d.messages):
            ratios.setdefault(drained.consumer, []).append(drained.orders_per_second / ledger)
    if args.runs > 1:
        print(f"\nvs the ledger over {args.runs} runs (min / median / max):")
        for consumer, values in ratios.items():
            print(f"  {consumer:<24}{min(values):.2f}x / {statistics.median(values):.2f}x / {max(values):.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
