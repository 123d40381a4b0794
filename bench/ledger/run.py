"""Ledger benchmark: publish OrderConfirmed events to a running ledger and report postings/s,
publish-to-commit latency percentiles and CPU per posting, beside two bare baselines measured
in the same run on the same broker and PostgreSQL (baseline.py):

* strict: a plain aio-pika + asyncpg consumer doing what a ledger minimally must (idempotent
  transactions with a unique key, two postings each, balances updated under FOR UPDATE,
  batches of 200) -- the target is the ledger at >= 0.7x of it;
* copy: the same consumer writing each batch with one COPY -- the floor of the machine.

    .venv/bin/python -m bench.ledger.run [--orders 5000] [--paced 1000 --rate 250] [--runs 3]

Everything runs on the local servers (CAGETTE_AMQP_URL / CAGETTE_POSTGRES_URL or the defaults),
isolated in a fresh RabbitMQ vhost and fresh databases that are dropped at the end. The ledger
runs as its own process (`python -m cagette_ledger serve`), exactly as deployed.

Phases per system, repeated --runs times (systems interleaved, so each run compares them
within the same minutes):
* burst: all orders published as fast as the publisher can (publisher confirms on), measuring
  throughput = orders / (last commit - first publish); latencies then include queueing.
* drain: the consumer's process is stopped (SIGSTOP), the orders are published, then it goes on
  (SIGCONT): throughput = orders / (last commit - resume), a queue pre-filled as after an outage.
* paced: orders published at a steady --rate below capacity: latencies are the per-message cost.
CPU per posting = user + system time of the consumer's process and of the PostgreSQL backends
of its database during the burst, divided by the orders.

Latency = the database clock when the posting row was written (clock_timestamp(), inside the
committing transaction) minus the wall clock just before publishing (same machine, same clock).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
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

from bench.measure import CpuMeter, Profiler
from cagette_contracts import GroupSettingsChanged, Money, OrderConfirmed, OrderLine, PaymentMethod, routing
from cagette_runtime.db import drop_database, ensure_database
from cagette_runtime.settings import DEFAULT_AMQP_URL, DEFAULT_POSTGRES_SERVER_URL
from cagette_runtime.testing import create_vhost, delete_vhost, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


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


@dataclass
class System:
    """A consumer under test: where its orders go and how to read when each was written."""

    name: str
    process: subprocess.Popen[bytes]
    db: asyncpg.Connection
    database: str
    table: str
    event_column: str
    time_column: str
    routing_key: str | None = None  # None: the ledger's own (orders.order.confirmed)

    @property
    def count_query(self) -> str:
        return f"SELECT count(*) FROM {self.table}"

    @property
    def times_query(self) -> str:
        columns = f"{self.event_column}, {self.time_column}"
        return f"SELECT {columns} FROM {self.table} WHERE {self.event_column} = ANY($1::uuid[])"


async def measure(system: System, phase: str, exchange, orders, rate: float = 0) -> Result:
    before = await system.db.fetchval(system.count_query)
    sent = await publish(exchange, orders, rate, system.routing_key)
    await wait_rows(system.db, system.count_query, before + len(orders), timeout=600)
    rows = await system.db.fetch(system.times_query, [o.event_id for o in orders])
    written = {row[0]: row[1].timestamp() for row in rows}
    latencies = [(written[e] - t) * 1000 for e, t in sent.items()]
    seconds = max(written.values()) - min(sent.values())
    return Result(system.name, phase, len(orders), seconds, latencies)


async def drain(system: System, exchange, orders) -> Result:
    before = await system.db.fetchval(system.count_query)
    system.process.send_signal(signal.SIGSTOP)
    try:
        await publish(exchange, orders, 0, system.routing_key)
        resumed = time.time()
    finally:
        system.process.send_signal(signal.SIGCONT)
    await wait_rows(system.db, system.count_query, before + len(orders), timeout=600)
    rows = await system.db.fetch(system.times_query, [o.event_id for o in orders])
    written = [row[1].timestamp() for row in rows]
    return Result(system.name, "drain", len(orders), max(written) - resumed, [(w - resumed) * 1000 for w in written])


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5000, help="burst and drain phase size")
    parser.add_argument("--paced", type=int, default=1000, help="paced phase size")
    parser.add_argument("--rate", type=float, default=250.0, help="paced phase messages per second")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1, help="repeat every phase; figures then as min / median / max")
    parser.add_argument("--profile", type=Path, help="py-spy the ledger during the first burst; summary to this file")
    parser.add_argument("--batch-size", type=int, default=200, help="ledger CAGETTE_LEDGER_BATCH_SIZE (1 = unbatched)")
    args = parser.parse_args()

    amqp_base = os.environ.get("CAGETTE_AMQP_URL", DEFAULT_AMQP_URL)
    pg = os.environ.get("CAGETTE_POSTGRES_URL", DEFAULT_POSTGRES_SERVER_URL)
    run_id = uuid.uuid4().hex[:8]
    vhost = f"cagette-bench-{run_id}"
    amqp_url = await create_vhost(amqp_base, vhost)
    names = {"ledger": f"bench_{run_id}_ledger", "strict": f"bench_{run_id}_strict", "copy": f"bench_{run_id}_copy"}
    urls = {name: f"{pg}/{database}" for name, database in names.items()}
    for url in urls.values():
        await ensure_database(url)
    dsn = lambda url: url.replace("postgresql+asyncpg://", "postgresql://")  # noqa: E731
    processes: list[subprocess.Popen[bytes]] = []
    connections: list[asyncpg.Connection] = []
    connection: aio_pika.abc.AbstractRobustConnection | None = None
    try:
        port = free_port()
        env = {
            **os.environ,
            "CAGETTE_DATABASE_URL": urls["ledger"],
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

        async def connect(name: str) -> asyncpg.Connection:
            db = await asyncpg.connect(dsn(urls[name]))
            connections.append(db)
            return db

        systems = [
            System(
                "ledger",
                ledger,
                await connect("ledger"),
                names["ledger"],
                "transactions",
                "source_event_id",
                "posted_at",
            )
        ]
        for mode, table, event_column in (
            ("strict", "strict_transactions", "event_id"),
            ("copy", "baseline_postings", "event_id"),
        ):
            queue_name = f"bench.{mode}"
            queue = await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
            await queue.bind(exchange, f"bench.{mode}.order")
            process = subprocess.Popen(
                [sys.executable, str(HERE / "baseline.py"), mode, amqp_url, dsn(urls[mode]), queue_name],
                cwd=ROOT,
                stdout=subprocess.PIPE,
            )
            processes.append(process)
            assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
            systems.append(
                System(
                    mode,
                    process,
                    await connect(mode),
                    names[mode],
                    table,
                    event_column,
                    "written_at",
                    f"bench.{mode}.order",
                )
            )

        # Warm-up (connections, plans, accounts opened), not measured.
        warm = make_orders(200, groups, args.members)
        for system in systems:
            await measure(system, "warmup", exchange, warm)

        results: list[Result] = []
        cpu: dict[str, list[float]] = {system.name: [] for system in systems}
        for run in range(args.runs):
            burst = make_orders(args.orders, groups, args.members)
            for system in systems:
                meter = CpuMeter({system.name: system.process.pid}, dsn(pg) + "/postgres", [system.database])
                profiler = None
                if args.profile and run == 0 and system.name == "ledger":
                    profiler = Profiler(system.process.pid, args.profile.with_suffix(".raw"))
                await meter.begin()
                results.append(await measure(system, "burst", exchange, burst))
                cpu[system.name].append(sum((await meter.end()).values()) * 1000 / len(burst))
                if profiler is not None:
                    profiler.stop()
                    args.profile.write_text(profiler.summary() + "\n")
            backlog = make_orders(args.orders, groups, args.members)
            for system in systems:
                results.append(await drain(system, exchange, backlog))
            paced = make_orders(args.paced, groups, args.members)
            for system in systems:
                results.append(await measure(system, "paced", exchange, paced, args.rate))

        audit = subprocess.run(
            [sys.executable, "-m", "cagette_ledger", "audit", "--database-url", urls["ledger"]],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        print(
            f"ledger batch size {args.batch_size}, {args.groups} groups, {args.members} members, "
            f"paced at {args.rate:.0f}/s, {args.runs} run(s), {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
        )
        for result in results:
            print(result.line())
        print(audit.stdout.strip().splitlines()[-1])

        def rates(name: str, phase: str) -> list[float]:
            return [r.count / r.seconds for r in results if r.name == name and r.phase == phase]

        def p99(name: str) -> list[float]:
            return [
                statistics.quantiles(r.latencies_ms, n=100, method="inclusive")[98]
                for r in results
                if r.name == name and r.phase == "paced"
            ]

        print("min / median / max over the runs (ratio: ledger / baseline, run by run):")
        for phase in ("burst", "drain"):
            for base in ("strict", "copy"):
                ratios = [
                    ours / theirs for ours, theirs in zip(rates("ledger", phase), rates(base, phase), strict=True)
                ]
                print(f"  {phase:<5} postings/s  ledger / {base:<6} {spread(ratios)}x   (target vs strict >= 0.7x)")
        ratios = [ours / theirs for ours, theirs in zip(p99("ledger"), p99("strict"), strict=True)]
        print(
            f"  paced p99 ms   ledger {spread(p99('ledger'))}  strict {spread(p99('strict'))}"
            f"  ratio {spread(ratios)}x (target <= 3x)"
        )
        for name, values in cpu.items():
            print(
                f"  CPU per posting (process + PostgreSQL backends) {name:<6} {spread(values)} ms"
                "   (ledger target <= 0.3 ms)"
            )
    finally:
        if connection is not None:
            await connection.close()
        for db in connections:
            await db.close()
        for process in processes:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for url in urls.values():
            await drop_database(url)
        await delete_vhost(amqp_base, vhost)


if __name__ == "__main__":
    asyncio.run(main())
