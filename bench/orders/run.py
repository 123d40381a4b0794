"""Order placement benchmark: HTTP `POST /groups/{g}/orders` on the whole running system (orders,
ledger, payments, notifications as separate processes, emails into an SMTP sink) beside a bare
FastAPI + asyncpg INSERT endpoint (baseline.py), measured in the same run with the same client.

    .venv/bin/python -m bench.orders.run [--orders 400] [--rate 50] [--paced-seconds 20] [--runs 1]
        [--profile var/orders-profile]

Figures, for the system and the baseline:
* burst at 8 and 32 clients (each client one keep-alive connection, requests back to back):
  requests/s and p50/p99 latency;
* paced at --rate orders/s: p50/p99 latency of the 201, and for the system the time from the
  201 to `ledger.balance.changed` for that order (matched by correlation id);
* CPU per order in the paced phase: user+system time of every service process and of the
  PostgreSQL backends serving their databases, from the phase's first order until the last
  order's balance event and the last email are out (all downstream work included), divided by
  the orders placed.

The client is a minimal HTTP/1.1 client on asyncio streams, so its own cost stays small beside
either server. Everything is isolated: a fresh vhost and fresh databases, dropped at the end.
Targets (issue 18): requests/s >= 0.3x the baseline at 8 and 32 clients, paced p99 <= 50 ms,
CPU <= 15 ms per order, 201 -> balance changed p99 <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import asyncpg

from bench.measure import CpuMeter, Profiler, smtp_sink
from cagette_contracts import Role
from cagette_contracts.routing import EVENTS_EXCHANGE
from cagette_runtime.auth import Principal, encode_token
from cagette_runtime.db import drop_database, ensure_database
from cagette_runtime.devstack import Stack
from cagette_runtime.settings import DEFAULT_AMQP_URL, DEFAULT_POSTGRES_SERVER_URL
from cagette_runtime.testing import create_vhost, delete_vhost, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SERVICES = ("orders", "ledger", "payments", "notifications")


# ------------------------------------------------------------------ a small HTTP/1.1 client


class Connection:
    """One keep-alive connection; requests one after the other."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n".encode()
            + body
        )
        status_line = await self.reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        answer: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            answer[name.strip().lower()] = value.strip()
        content = await self.reader.readexactly(int(answer.get("content-length", "0")))
        if answer.get("connection", "").lower() == "close":
            await self.close()
        return status, answer, content

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# ------------------------------------------------------------------ processes and their CPU


# ------------------------------------------------------------------ load


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


@dataclass
class Phase:
    name: str
    orders: int
    seconds: float
    latencies: list[float]
    refused: int

    @property
    def rate(self) -> float:
        return self.orders / self.seconds if self.seconds else 0.0


@dataclass
class Target:
    port: int
    path: str
    baskets: Iterator[tuple[str, bytes]]  # (member's authorization, body)
    placed: dict[str, float] = field(default_factory=dict)  # correlation id -> when the 201 came

    async def place(self, connection: Connection, latencies: list[float]) -> bool:
        authorization, body = next(self.baskets)
        correlation_id = uuid.uuid4().hex
        headers = {
            "Authorization": authorization,
            "X-Correlation-ID": correlation_id,
            "Idempotency-Key": uuid.uuid4().hex,
        }
        began = time.perf_counter()
        status, _, content = await connection.post(self.path, body, headers)
        latencies.append(time.perf_counter() - began)
        if status != 201:
            print(f"  refused {status}: {content[:300]!r}", file=sys.stderr)
            return False
        self.placed[correlation_id] = time.perf_counter()
        return True


async def burst(target: Target, name: str, clients: int, orders: int) -> Phase:
    latencies: list[float] = []
    remaining = orders
    refused = 0

    async def client() -> None:
        nonlocal remaining, refused
        connection = Connection(target.port)
        try:
            while remaining > 0:
                remaining -= 1
                refused += not await target.place(connection, latencies)
        finally:
            await connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Phase(name, orders, time.perf_counter() - began, latencies, refused)


async def paced(target: Target, name: str, rate: float, seconds: float) -> Phase:
    latencies: list[float] = []
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(Connection(target.port))
    refused = 0

    async def one() -> None:
        nonlocal refused
        connection = await pool.get()
        try:
            refused += not await target.place(connection, latencies)
        finally:
            pool.put_nowait(connection)

    count = int(rate * seconds)
    began = time.perf_counter()
    tasks = []
    for index in range(count):
        delay = began + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    while not pool.empty():
        await pool.get_nowait().close()
    return Phase(name, count, elapsed, latencies, refused)


# ------------------------------------------------------------------ the system under test


def bearer(user_id: uuid.UUID, *, roles: dict[uuid.UUID, Role] | None = None, admin: bool = False) -> str:
    return "Bearer " + encode_token(Principal(user_id=user_id, roles=roles or {}, platform_admin=admin))


async def seed(orders_url: str, members: int, distributions: int) -> tuple[str, Iterator[tuple[str, bytes]]]:
    """A group paying by cheque, `members` members, `distributions` distributions of one catalog;
    yields one distinct basket (member x distribution) per order."""
    import httpx

    from cagette_web import seeding

    admin, coordinator = uuid.uuid4(), uuid.uuid4()
    async with httpx.AsyncClient(base_url=orders_url, timeout=30) as http:
        group_id = await seeding.create_group(
            http,
            {"Authorization": bearer(admin, admin=True), "Idempotency-Key": uuid.uuid4().hex},
            "AMAP du Banc d'essai",
            payment_methods=["cheque"],
            cheque_payee="AMAP du Banc d'essai",
        )
        as_coordinator = {"Authorization": bearer(coordinator, roles={group_id: Role.COORDINATOR})}

        def keyed() -> dict[str, str]:
            return {**as_coordinator, "Idempotency-Key": uuid.uuid4().hex}

        farm = [
            seeding.Product("Panier de légumes", 1550),
            seeding.Product("Oeufs x6", 320),
            seeding.Product("Pain", 410),
        ]
        catalog = await seeding.add_catalog(http, keyed(), group_id, "Ferme du Pré", farm, kind="variable")
        products = catalog.product_ids
        distribution_ids = [
            await seeding.add_distribution(
                http,
                keyed(),
                group_id,
                [catalog.catalog_id],
                place="Préau",
                starts_at=datetime.now(UTC) + timedelta(days=3 + day),
            )
            for day in range(distributions)
        ]
        member_ids = [uuid.uuid4() for _ in range(members)]
        for index, member_id in enumerate(member_ids):
            joining = seeding.Joining(f"Membre {index}", f"m{index}@example.org", member_id=member_id)
            await seeding.add_member(http, keyed(), group_id, joining)

    def baskets() -> Iterator[tuple[str, bytes]]:
        for distribution_id in distribution_ids:
            for member_id in member_ids:
                body = seeding.order_body(distribution_id, "cheque", [(products[0], "1"), (products[1], "2")])
                yield bearer(member_id, roles={group_id: Role.MEMBER}), json.dumps(body).encode()

    return str(group_id), baskets()


async def balance_arrivals(amqp_url: str, arrived: dict[str, float]) -> aio_pika.abc.AbstractRobustConnection:
    """Record when each `ledger.balance.changed` arrives, by correlation id."""
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    exchange = await channel.get_exchange(EVENTS_EXCHANGE)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, "ledger.balance.changed")

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        if message.correlation_id:
            arrived.setdefault(message.correlation_id, time.perf_counter())
        await message.ack()

    await queue.consume(on_message)
    return connection


async def emails_left(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval("SELECT count(*) FROM email_deliveries WHERE status IN ('pending', 'sending')")
        )
    finally:
        await connection.close()


async def wait_drained(target: Target, arrived: dict[str, float], notifications_dsn: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(key in arrived for key in target.placed) and await emails_left(notifications_dsn) == 0:
            return
        await asyncio.sleep(0.2)
    missing = sum(key not in arrived for key in target.placed)
    raise TimeoutError(f"not drained after {timeout:.0f}s: {missing} balance events missing")


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def wait_ready(port: int, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"nothing ready on port {port}")


# ------------------------------------------------------------------ one run


@dataclass
class Figures:
    phases: dict[str, Phase]
    cpu: dict[str, float]  # seconds per order, by process group
    to_balance: list[float] = field(default_factory=list)


PROFILED_LIBRARIES = (
    "cagette_",
    "faststream",
    "fast_depends",
    "aio_pika",
    "aiormq",
    "sqlalchemy",
    "asyncpg",
    "pydantic",
    "fastapi",
    "starlette",
    "uvicorn",
    "opentelemetry",
    "prometheus",
    "logging",
    "jinja2",
    "babel",
    "email",
    "smtp",
)


async def measure(
    target: Target,
    args: argparse.Namespace,
    meter: CpuMeter,
    drain: Callable[[], Awaitable[None]] | None,
    profiled: dict[str, int] | None = None,
) -> Figures:
    phases = {}
    for clients in (8, 32):
        phases[f"burst{clients}"] = await burst(target, f"burst {clients} clients", clients, args.orders)
        if drain:
            await drain()
    target.placed.clear()
    profilers = {name: Profiler(pid, args.profile / f"{name}.raw") for name, pid in (profiled or {}).items()}
    await meter.begin()
    phases["paced"] = await paced(target, f"paced {args.rate:g}/s", args.rate, args.paced_seconds)
    if drain:
        await drain()
    spent = await meter.end()
    for name, profiler in profilers.items():
        profiler.stop()
        summary = profiler.summary(top=45, ours=PROFILED_LIBRARIES)
        (args.profile / f"{name}.txt").write_text(summary + "\n")
    placed = phases["paced"].orders - phases["paced"].refused
    return Figures(phases, {name: seconds / max(placed, 1) for name, seconds in spent.items()})


async def one_run(args: argparse.Namespace, number: int) -> tuple[Figures, Figures]:
    amqp_base = os.environ.get("CAGETTE_AMQP_URL", DEFAULT_AMQP_URL)
    postgres = os.environ.get("CAGETTE_POSTGRES_URL", DEFAULT_POSTGRES_SERVER_URL)
    run_id = f"bench{uuid.uuid4().hex[:8]}"
    vhost = f"cagette-bench-{run_id}"
    amqp_url = await create_vhost(amqp_base, vhost)
    smtp_port = free_port()
    sink = smtp_sink(smtp_port)
    stack = Stack(
        amqp_url=amqp_url,
        postgres_url=postgres,
        database_prefix=run_id,
        ports={service: free_port() for service in SERVICES},
        extra_env={
            "CAGETTE_SMTP_HOST": "127.0.0.1",
            "CAGETTE_SMTP_PORT": str(smtp_port),
            "CAGETTE_LOG_LEVEL": "WARNING",
        },
        log_dir=ROOT / "var" / "bench-logs" / run_id,
    )
    baseline_url = f"{postgres}/{run_id}_baseline"
    baseline: subprocess.Popen[bytes] | None = None
    arrivals: aio_pika.abc.AbstractRobustConnection | None = None
    try:
        await stack.start()
        baskets_needed = 2 * args.orders + int(args.rate * args.paced_seconds)
        members = 100
        group_id, baskets = await seed(stack.services["orders"].url, members, -(-baskets_needed // members))
        await asyncio.sleep(2)  # the group's and members' events reach the other services
        arrived: dict[str, float] = {}
        arrivals = await balance_arrivals(amqp_url, arrived)
        system = Target(stack.services["orders"].port, f"/groups/{group_id}/orders", baskets)
        notifications_dsn = asyncpg_dsn(stack.database_url("notifications"))
        roots = {name: service.process.pid for name, service in stack.services.items() if service.process}
        meter = CpuMeter(roots, asyncpg_dsn(postgres) + "/postgres", [f"{run_id}_{name}" for name in SERVICES])

        async def drain() -> None:
            await wait_drained(system, arrived, notifications_dsn)

        print(f"run {number}: system ({', '.join(SERVICES)}) ...", flush=True)
        profiled = None
        if args.profile and number == 1:
            args.profile.mkdir(parents=True, exist_ok=True)
            profiled = roots
        ours = await measure(system, args, meter, drain, profiled)
        ours.to_balance = [arrived[key] - placed for key, placed in system.placed.items() if key in arrived]

        await ensure_database(baseline_url)
        port = free_port()
        baseline = subprocess.Popen([sys.executable, str(HERE / "baseline.py"), asyncpg_dsn(baseline_url), str(port)])
        await wait_ready(port)
        group = uuid.uuid4()
        body = json.dumps(
            {
                "distribution_id": str(uuid.uuid4()),
                "payment_method": "cheque",
                "lines": [
                    {"product_id": str(uuid.uuid4()), "quantity": "1"},
                    {"product_id": str(uuid.uuid4()), "quantity": "2"},
                ],
            }
        ).encode()

        def same_body() -> Iterator[tuple[str, bytes]]:
            while True:
                yield "Bearer -", body

        bare = Target(port, f"/groups/{group}/orders", same_body())
        print(f"run {number}: baseline (FastAPI + one asyncpg INSERT) ...", flush=True)
        theirs = await measure(
            bare,
            args,
            CpuMeter({"baseline": baseline.pid}, asyncpg_dsn(postgres) + "/postgres", [f"{run_id}_baseline"]),
            None,
        )
        return ours, theirs
    finally:
        if arrivals is not None:
            await arrivals.close()
        if baseline is not None:
            baseline.terminate()
            baseline.wait(10)
        await stack.stop()
        sink.terminate()
        sink.wait(10)
        for name in SERVICES:
            await drop_database(stack.database_url(name))
        await drop_database(baseline_url)
        await delete_vhost(amqp_base, vhost)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(number: int, ours: Figures, theirs: Figures) -> None:
    print(f"\n== run {number} ==")
    print(f"{'figure':<34}{'system':>12}{'baseline':>12}{'ratio':>9}   target")
    for key in ("burst8", "burst32"):
        a, b = ours.phases[key], theirs.phases[key]
        print(f"{a.name + ' orders/s':<34}{a.rate:>12.1f}{b.rate:>12.1f}{a.rate / b.rate:>8.2f}x   >= 0.3x")
        print(
            f"{'  p50 / p99 ms':<34}{ms(percentile(a.latencies, 0.5)) + ' / ' + ms(percentile(a.latencies, 0.99)):>20}"
            f"{ms(percentile(b.latencies, 0.5)) + ' / ' + ms(percentile(b.latencies, 0.99)):>16}"
        )
    a, b = ours.phases["paced"], theirs.phases["paced"]
    print(f"{a.name + ' p50 ms':<34}{ms(percentile(a.latencies, 0.5)):>12}{ms(percentile(b.latencies, 0.5)):>12}")
    print(
        f"{a.name + ' p99 ms':<34}{ms(percentile(a.latencies, 0.99)):>12}{ms(percentile(b.latencies, 0.99)):>12}"
        f"{'':>9}   <= 50"
    )
    print(f"{'201 -> balance.changed p50 ms':<34}{ms(percentile(ours.to_balance, 0.5)):>12}")
    print(f"{'201 -> balance.changed p99 ms':<34}{ms(percentile(ours.to_balance, 0.99)):>12}{'':>21}   <= 250")
    total_ours, total_theirs = sum(ours.cpu.values()), sum(theirs.cpu.values())
    print(f"{'CPU ms per order (paced), total':<34}{ms(total_ours):>12}{ms(total_theirs):>12}{'':>9}   <= 15")
    for name, seconds in sorted(ours.cpu.items(), key=lambda item: -item[1]):
        print(f"{'  ' + name:<34}{ms(seconds):>12}")
    refused = sum(phase.refused for phase in ours.phases.values())
    if refused:
        print(f"!! {refused} orders refused by the system (see stderr)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=400, help="orders per burst phase")
    parser.add_argument("--rate", type=float, default=50.0, help="orders/s in the paced phase")
    parser.add_argument("--paced-seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--profile", type=Path, help="py-spy every service during run 1's paced phase; summaries in this directory"
    )
    args = parser.parse_args()
    results = []
    for number in range(1, args.runs + 1):
        ours, theirs = await one_run(args, number)
        report(number, ours, theirs)
        results.append((ours, theirs))
    if len(results) > 1:
        ratios8 = [o.phases["burst8"].rate / t.phases["burst8"].rate for o, t in results]
        cpu = [sum(o.cpu.values()) * 1000 for o, _ in results]
        print(
            f"\nmedian of {len(results)} runs: burst8 ratio {statistics.median(ratios8):.2f}x, "
            f"CPU {statistics.median(cpu):.1f} ms/order"
        )


if __name__ == "__main__":
    asyncio.run(main())
