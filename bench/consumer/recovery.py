"""Recovery after a broker outage: how long a service takes to be ready again, and to publish an
event its outbox kept through the outage, once the broker is back. The service reaches the broker
through a TCP proxy that goes down for `--outage` seconds (connections cut, new ones refused).

Two configurations in the same run, on the same servers:
* before: FastStream's default reconnect interval (5 s) and a relay that waits out its backoff;
* now: CAGETTE_BROKER_RECONNECT_INTERVAL (1 s) and the relay's backoff ended when the broker is back.

    .venv/bin/python bench/consumer/recovery.py [--outage 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

import httpx
from sqlalchemy import select

from cagette_contracts import Event
from cagette_runtime import outbox
from cagette_runtime.scratch import messaging_scratch
from cagette_runtime.service import Service
from cagette_runtime.settings import ServiceSettings
from cagette_runtime.tables import outbox_messages
from cagette_runtime.testing import Outage


class BenchRecovered(Event):
    event_type: Literal["bench.recovery.noted"] = "bench.recovery.noted"
    schema_version: Literal[1] = 1


async def until(probe: Callable[[], Awaitable[bool]], timeout: float = 120.0) -> float:
    started = time.monotonic()
    while not await probe():
        if time.monotonic() - started > timeout:
            raise TimeoutError("not recovered in time")
        await asyncio.sleep(0.05)
    return time.monotonic()


async def one_run(configuration: str, amqp_url: str, database_url: str, outage: float) -> tuple[float, float]:
    async with Outage(amqp_url) as broker:
        settings = ServiceSettings(
            service_name="recovery",
            database_url=database_url,
            amqp_url=broker.url,
            migrate_on_start=False,
            broker_reconnect_interval=5.0 if configuration == "before" else 1.0,
            outbox_poll_interval=0.5,
        )
        service = Service("recovery", migrations="unused", settings=settings)
        if configuration == "before":
            service.relay.broker_reconnected = lambda connection=None: None  # the relay before: no reset
        app = service.create_app()
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://recovery") as client:
                # The event log stream is bound to '#': the event is routable.
                await broker.down()
                event = BenchRecovered(group_id=uuid.uuid4())
                async with service.database.transaction() as session:
                    await outbox.add(session, event)
                await asyncio.sleep(outage)
                await broker.up()
                back = time.monotonic()

                async def ready() -> bool:
                    return (await client.get("/ready")).status_code == 200

                async def published() -> bool:
                    query = select(outbox_messages.c.published_at).where(outbox_messages.c.event_id == event.event_id)
                    async with service.database.sessionmaker() as session:
                        return (await session.scalar(query)) is not None

                ready_at = await until(ready)
                published_at = await until(published)
    return ready_at - back, published_at - back


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage", type=float, default=20.0, help="seconds the broker is away")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    run_id = uuid.uuid4().hex[:8]
    results: dict[str, list[tuple[float, float]]] = {"before": [], "now": []}
    for n in range(args.runs):
        for configuration in results:
            vhost = f"cagette-bench-recovery-{run_id}-{configuration}-{n}"
            database = f"bench_recovery_{run_id}_{configuration}_{n}"
            async with messaging_scratch(vhost, database) as (amqp_url, database_url):
                results[configuration].append(await one_run(configuration, amqp_url, database_url, args.outage))
    print(f"broker away {args.outage:.0f} s, an event written at the start of the outage; {args.runs} runs each")
    print("baseline: before = reconnect every 5 s, relay waits out its backoff; now = 1 s, backoff ended on return")
    for configuration, runs in results.items():
        ready = statistics.median(r for r, _ in runs)
        published = statistics.median(p for _, p in runs)
        print(
            f"{configuration:<7} ready {ready:>6.2f} s after the broker is back (median)   "
            f"event published {published:>6.2f} s after (median)   runs: "
            + ", ".join(f"{r:.1f}/{p:.1f}" for r, p in runs)
        )


if __name__ == "__main__":
    asyncio.run(main())
