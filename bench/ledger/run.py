"""Ledger benchmark: publish N OrderConfirmed events to a running ledger and report postings/s
and publish-to-commit latency percentiles, beside a bare baseline (plain aio-pika consumer +
asyncpg COPY batch insert, no framework: baseline.py) measured in the same run.

    .venv/bin/python bench/ledger/run.py [--orders 5000] [--paced 1000 --rate 250] [--members 1000]

Everything runs on the local servers (CAGETTE_AMQP_URL / CAGETTE_POSTGRES_URL or the defaults),
isolated in a fresh RabbitMQ vhost and fresh databases that are dropped at the end. The ledger
runs as its own process (`python -m cagette_ledger serve`), exactly as deployed.

Two phases per system:
* burst: all orders published as fast as the publisher can (publisher confirms on), measuring
  throughput = orders / (last commit - first publish); latencies then include queueing.
* paced: orders published at a steady --rate below capacity: latencies are the per-message cost.

Latency = the database clock when the posting row was written (clock_timestamp(), inside the
committing transaction) minus the wall clock just before publishing (same machine, same clock).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aio_pika
import asyncpg
import httpx

from cagette_contracts import GroupSettingsChanged, Money, OrderConfirmed, OrderLine, PaymentMethod, routing
from cagette_runtime.db import drop_database, ensure_database
from cagette_runtime.settings import DEFAULT_AMQP_URL, DEFAULT_POSTGRES_SERVER_URL
from cagette_runtime.testing import create_vhost, delete_vhost

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BASELINE_QUEUE = "bench.baseline"


@dataclass
class Result:
    name: str
    phase: str
    count: int
    seconds: float
    latencies_ms: list[float]

    def line(self) -> str:
        q = statistics.quantiles(self.latencies_ms, n=100, method="inclusive")
        return (
            f"{self.name:<9} {self.phase:<6} {self.count:>6} msgs  {self.count / self.seconds:>8.0f} postings/s   "
            f"latency ms p50 {q[49]:>7.1f}  p90 {q[89]:>7.1f}  p99 {q[98]:>7.1f}  max {max(self.latencies_ms):>7.1f}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_orders(n: int, groups: list[uuid.UUID], members: int) -> list[OrderConfirmed]:
    people = [uuid.uuid4() for _ in range(members)]
    orders = []
    for i in range(n):
        price = Money(amount=100 + i % 5000, currency="EUR")
        orders.append(
            OrderConfirmed(
                group_id=groups[i % len(groups)],
                order_id=uuid.uuid4(),
                member_id=people[i % members],
                payment_method=PaymentMethod.CHEQUE,
                lines=[OrderLine(product_name="basket", quantity=Decimal(1), unit_price=price, line_total=price)],
                total=price,
            )
        )
    return orders


async def publish(
    exchange: aio_pika.abc.AbstractExchange, orders: list[OrderConfirmed], rate: float, routing_key: str | None = None
) -> dict[uuid.UUID, float]:
    """Publish with confirms; returns event id -> wall time just before publishing."""
    sent: dict[uuid.UUID, float] = {}
    bodies = [(o.event_id, o.model_dump_json().encode()) for o in orders]

    async def one(event_id: uuid.UUID, body: bytes) -> None:
        sent[event_id] = time.time()
        await exchange.publish(
            aio_pika.Message(
                body,
                message_id=str(event_id),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key or routing.ORDER_CONFIRMED,
        )

    if rate <= 0:
        for start in range(0, len(bodies), 500):
            await asyncio.gather(*(one(e, b) for e, b in bodies[start : start + 500]))
    else:
        begin = time.perf_counter()
        tasks = []
        for i, (e, b) in enumerate(bodies):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(e, b)))
        await asyncio.gather(*tasks)
    return sent


async def wait_rows(db: asyncpg.Connection, query: str, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (count := await db.fetchval(query)) < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {count} of {expected} rows after {timeout}s ({query})")
        await asyncio.sleep(0.05)


async def measure(
    name: str,
    phase: str,
    exchange,
    db: asyncpg.Connection,
    orders,
    rate: float,
    count_query: str,
    times_query: str,
    routing_key: str | None = None,
) -> Result:
    before = await db.fetchval(count_query)
    sent = await publish(exchange, orders, rate, routing_key)
    await wait_rows(db, count_query, before + len(orders), timeout=300)
    rows = await db.fetch(times_query, [o.event_id for o in orders])
    written = {row[0]: row[1].timestamp() for row in rows}
    latencies = [(written[e] - t) * 1000 for e, t in sent.items()]
    seconds = max(written.values()) - min(sent.values())
    return Result(name, phase, len(orders), seconds, latencies)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5000, help="burst phase size")
    parser.add_argument("--paced", type=int, default=1000, help="paced phase size")
    parser.add_argument("--rate", type=float, default=250.0, help="paced phase messages per second")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=200, help="ledger CAGETTE_LEDGER_BATCH_SIZE (1 = unbatched)")
    args = parser.parse_args()

    amqp_base = os.environ.get("CAGETTE_AMQP_URL", DEFAULT_AMQP_URL)
    pg = os.environ.get("CAGETTE_POSTGRES_URL", DEFAULT_POSTGRES_SERVER_URL)
    run_id = uuid.uuid4().hex[:8]
    vhost = f"cagette-bench-{run_id}"
    amqp_url = await create_vhost(amqp_base, vhost)
    ledger_url = f"{pg}/bench_{run_id}_ledger"
    baseline_url = f"{pg}/bench_{run_id}_baseline"
    await ensure_database(ledger_url)
    await ensure_database(baseline_url)
    dsn = lambda url: url.replace("postgresql+asyncpg://", "postgresql://")  # noqa: E731
    processes: list[subprocess.Popen] = []
    try:
        port = free_port()
        env = {
            **os.environ,
            "CAGETTE_DATABASE_URL": ledger_url,
            "CAGETTE_AMQP_URL": amqp_url,
            "CAGETTE_HTTP_PORT": str(port),
            "CAGETTE_LOG_LEVEL": "WARNING",
            "CAGETTE_PREFETCH_COUNT": "256",
            "CAGETTE_LEDGER_BATCH_SIZE": str(args.batch_size),
        }
        ledger = subprocess.Popen([sys.executable, "-m", "cagette_ledger", "serve"], env=env, cwd=ROOT)
        processes.append(ledger)
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if ledger.poll() is not None:
                    raise SystemExit("the ledger exited during start-up")
                await asyncio.sleep(0.1)
            else:
                raise SystemExit("the ledger did not become ready")

        connection = await aio_pika.connect_robust(amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(routing.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(BASELINE_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange, "bench.baseline.order")
        # What the ledger publishes must be routable (in production notifications and others
        # subscribe); a sink that drops everything stands in for those subscribers.
        sink = await channel.declare_queue("bench.ledger-events-sink", arguments={"x-message-ttl": 0})
        await sink.bind(exchange, "ledger.#")

        groups = [uuid.uuid4() for _ in range(args.groups)]
        for group in groups:
            settings = GroupSettingsChanged(group_id=group, name="bench", currency="EUR", payments_enabled=True)
            await exchange.publish(
                aio_pika.Message(settings.model_dump_json().encode(), message_id=str(settings.event_id)),
                routing_key=routing.GROUP_SETTINGS_CHANGED,
            )

        ledger_db = await asyncpg.connect(dsn(ledger_url))
        baseline_db = await asyncpg.connect(dsn(baseline_url))
        ledger_count = "SELECT count(*) FROM transactions"
        ledger_times = "SELECT source_event_id, posted_at FROM transactions WHERE source_event_id = ANY($1::uuid[])"

        baseline = subprocess.Popen(
            [sys.executable, str(HERE / "baseline.py"), amqp_url, dsn(baseline_url), BASELINE_QUEUE],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(baseline)
        assert baseline.stdout is not None and baseline.stdout.readline().strip() == "ready"
        base_count = "SELECT count(*) FROM baseline_postings"
        base_times = "SELECT event_id, written_at FROM baseline_postings WHERE event_id = ANY($1::uuid[])"

        # Warm-up (connections, plans, accounts opened), not measured.
        warm = make_orders(200, groups, args.members)
        await measure("ledger", "warmup", exchange, ledger_db, warm, 0, ledger_count, ledger_times)
        await measure(
            "baseline", "warmup", exchange, baseline_db, warm, 0, base_count, base_times, "bench.baseline.order"
        )

        results = []
        burst = make_orders(args.orders, groups, args.members)
        results.append(await measure("ledger", "burst", exchange, ledger_db, burst, 0, ledger_count, ledger_times))
        results.append(
            await measure(
                "baseline", "burst", exchange, baseline_db, burst, 0, base_count, base_times, "bench.baseline.order"
            )
        )
        paced = make_orders(args.paced, groups, args.members)
        results.append(
            await measure("ledger", "paced", exchange, ledger_db, paced, args.rate, ledger_count, ledger_times)
        )
        results.append(
            await measure(
                "baseline",
                "paced",
                exchange,
                baseline_db,
                paced,
                args.rate,
                base_count,
                base_times,
                "bench.baseline.order",
            )
        )

        audit = subprocess.run(
            [sys.executable, "-m", "cagette_ledger", "audit", "--database-url", ledger_url],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        print(
            f"ledger batch size {args.batch_size}, {args.groups} groups, {args.members} members, "
            f"paced at {args.rate:.0f}/s, {os.cpu_count()} CPUs"
        )
        for result in results:
            print(result.line())
        print(audit.stdout.strip().splitlines()[-1])
        await ledger_db.close()
        await baseline_db.close()
        await connection.close()
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        await drop_database(ledger_url)
        await drop_database(baseline_url)
        await delete_vhost(amqp_base, vhost)


if __name__ == "__main__":
    asyncio.run(main())
