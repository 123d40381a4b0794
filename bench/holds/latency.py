"""How long a money-pot hold must live: from the ledger granting it to the ledger posting the
order's OrderConfirmed (the capture), measured on the real flow with orders and the ledger
in-process, on the real broker and PostgreSQL (a fresh vhost and fresh databases, dropped at
the end).

    .venv/bin/python bench/holds/latency.py [--orders 200] [--clients 4]

`--orders` money-pot orders (negatives not allowed, so each one is held first) are placed over
orders' HTTP API by `--clients` concurrent clients. The figures come from the ledger's holds
table: `created_at` is the grant's transaction, `resolved_at` the capture's (both the database's
now()), so they include orders recording the order, its outbox relay, the broker and the
ledger's batched consumer. Printed: p50, p90, p99 and max over the captured holds, and the
201 latency of the orders seen by the client.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from cagette_contracts import Role
from cagette_ledger.app import LedgerService
from cagette_ledger.settings import LedgerSettings
from cagette_orders.app import OrdersService
from cagette_orders.settings import OrdersSettings
from cagette_runtime.auth import Principal, encode_token
from cagette_runtime.db import drop_database, ensure_database
from cagette_runtime.settings import DEFAULT_AMQP_URL, DEFAULT_POSTGRES_SERVER_URL
from cagette_runtime.testing import create_vhost, delete_vhost


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def bearer(user_id: uuid.UUID, roles: dict[uuid.UUID, Role] | None = None, admin: bool = False) -> dict[str, str]:
    token = encode_token(Principal(user_id=user_id, roles=roles or {}, platform_admin=admin))
    return {"Authorization": f"Bearer {token}"}


async def eventually(probe: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError("gave up waiting")
        await asyncio.sleep(0.05)


async def run(orders_count: int, clients: int) -> None:
    run_id = uuid.uuid4().hex[:8]
    vhost = f"cagette-bench-holds-{run_id}"
    amqp_url = await create_vhost(DEFAULT_AMQP_URL, vhost)
    databases = {name: f"{DEFAULT_POSTGRES_SERVER_URL}/bench_holds_{run_id}_{name}" for name in ("orders", "ledger")}
    for url in databases.values():
        await ensure_database(url)
    common = {"amqp_url": amqp_url}  # every other setting: the services' defaults
    ledger = LedgerService(LedgerSettings(database_url=databases["ledger"], **common))
    orders = OrdersService(OrdersSettings(database_url=databases["orders"], **common))
    await ledger.start()
    await orders.start()
    try:
        transports = {
            name: httpx.ASGITransport(app=s.create_app()) for name, s in (("orders", orders), ("ledger", ledger))
        }
        async with (
            httpx.AsyncClient(transport=transports["orders"], base_url="http://orders", timeout=30) as api,
            httpx.AsyncClient(transport=transports["ledger"], base_url="http://ledger", timeout=30) as books,
        ):
            coordinator = uuid.uuid4()
            created = await api.post(
                "/groups",
                headers=bearer(uuid.uuid4(), admin=True),
                json={"name": "Banc d'essai", "currency": "EUR", "payment_methods": ["money_pot"]},
            )
            created.raise_for_status()
            group_id = uuid.UUID(created.json()["group_id"])
            as_coordinator = bearer(coordinator, {group_id: Role.COORDINATOR})
            admin = bearer(uuid.uuid4(), admin=True)
            (
                await api.post(
                    f"/groups/{group_id}/members",
                    headers=admin,
                    json={"member_id": str(coordinator), "role": "coordinator", "name": "C", "email": "c@example.org"},
                )
            ).raise_for_status()
            catalog = await api.post(
                f"/groups/{group_id}/catalogs",
                headers=as_coordinator,
                json={"name": "Ferme", "kind": "variable", "products": [{"name": "Pain", "unit_price": 410}]},
            )
            catalog.raise_for_status()
            bread = catalog.json()["products"][0]["product_id"]
            per_member = 5
            distributions = []
            for day in range(per_member):
                starts = datetime.now(UTC) + timedelta(days=day + 3)
                response = await api.post(
                    f"/groups/{group_id}/distributions",
                    headers=as_coordinator,
                    json={
                        "starts_at": starts.isoformat(),
                        "place": "La grange",
                        "catalog_ids": [catalog.json()["catalog_id"]],
                        "orders_open_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                        "orders_close_at": (starts - timedelta(hours=1)).isoformat(),
                    },
                )
                response.raise_for_status()
                distributions.append(response.json()["distribution_id"])
            members = []
            for number in range((orders_count + per_member - 1) // per_member):
                member_id = uuid.uuid4()
                joined = await api.post(
                    f"/groups/{group_id}/members",
                    headers=as_coordinator,
                    json={"member_id": str(member_id), "name": f"M{number}", "email": f"m{number}@example.org"},
                )
                joined.raise_for_status()
                members.append(member_id)
            for member_id in members:  # money on every pot, once the ledger knows the member

                async def topped_up(member_id: uuid.UUID = member_id) -> bool:
                    response = await books.post(
                        f"/groups/{group_id}/members/{member_id}/opening-balance",
                        headers=as_coordinator,
                        json={"amount": {"amount": 100_000, "currency": "EUR"}, "memo": "bench"},
                    )
                    return response.status_code == 201

                await eventually(topped_up)
            baskets = [(m, d) for m in members for d in distributions][:orders_count]
            queue: asyncio.Queue[tuple[uuid.UUID, str]] = asyncio.Queue()
            for basket in baskets:
                queue.put_nowait(basket)
            answered: list[float] = []

            async def client() -> None:
                while not queue.empty():
                    member_id, distribution_id = queue.get_nowait()
                    started = time.perf_counter()
                    response = await api.post(
                        f"/groups/{group_id}/orders",
                        headers=bearer(member_id, {group_id: Role.MEMBER}),
                        json={
                            "distribution_id": distribution_id,
                            "payment_method": "money_pot",
                            "lines": [{"product_id": bread, "quantity": "1"}],
                        },
                    )
                    assert response.status_code == 201, response.text
                    answered.append(time.perf_counter() - started)

            await asyncio.gather(*(client() for _ in range(clients)))

            async def all_captured() -> bool:
                async with ledger.database.sessionmaker() as session:
                    left = await session.scalar(
                        text("SELECT count(*) FROM holds WHERE group_id = :g AND status <> 'captured'"), {"g": group_id}
                    )
                    done = await session.scalar(
                        text("SELECT count(*) FROM holds WHERE group_id = :g AND status = 'captured'"), {"g": group_id}
                    )
                return left == 0 and done == len(baskets)

            await eventually(all_captured, timeout=120)
            async with ledger.database.sessionmaker() as session:
                rows = await session.execute(
                    text(
                        "SELECT extract(epoch FROM resolved_at - created_at) AS seconds FROM holds "
                        "WHERE group_id = :g AND status = 'captured'"
                    ),
                    {"g": group_id},
                )
                lived = [float(row.seconds) for row in rows]
        print(f"{len(lived)} money-pot orders, {clients} concurrent clients (orders + ledger in-process)")
        print(
            "hold grant -> capture (ledger posted OrderConfirmed): "
            f"p50 {statistics.median(lived) * 1000:.0f} ms, p90 {percentile(lived, 0.9) * 1000:.0f} ms, "
            f"p99 {percentile(lived, 0.99) * 1000:.0f} ms, max {max(lived) * 1000:.0f} ms"
        )
        print(
            "POST /orders -> 201: "
            f"p50 {statistics.median(answered) * 1000:.0f} ms, p99 {percentile(answered, 0.99) * 1000:.0f} ms"
        )
    finally:
        await orders.stop()
        await ledger.stop()
        for url in databases.values():
            await drop_database(url)
        await delete_vhost(DEFAULT_AMQP_URL, vhost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(run(args.orders, args.clients))


if __name__ == "__main__":
    main()
