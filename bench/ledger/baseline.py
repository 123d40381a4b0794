"""The bare baseline the ledger is measured against: a plain aio-pika consumer that inserts
each delivered batch with one asyncpg COPY and acks it (multiple=True). No framework, no inbox,
no outbox, no double entry: the floor of what a consumer on this machine costs.

Run by run.py as a subprocess: python baseline.py AMQP_URL POSTGRES_DSN QUEUE
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import aio_pika
import asyncpg

BATCH = 200


async def main(amqp_url: str, dsn: str, queue_name: str) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS baseline_postings (event_id uuid PRIMARY KEY, member_id uuid NOT NULL,"
        " amount bigint NOT NULL, written_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=BATCH)
    queue = await channel.get_queue(queue_name)
    buffer: list[aio_pika.abc.AbstractIncomingMessage] = []
    arrived = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        buffer.append(message)
        arrived.set()

    await queue.consume(on_message)
    print("ready", flush=True)
    while True:
        await arrived.wait()
        await asyncio.sleep(0.002)
        batch = buffer[:BATCH]
        del buffer[:BATCH]
        if not buffer:
            arrived.clear()
        rows = []
        for message in batch:
            body = json.loads(message.body)
            rows.append((uuid.UUID(body["event_id"]), uuid.UUID(body["member_id"]), -int(body["total"]["amount"])))
        async with pool.acquire() as db, db.transaction():
            await db.copy_records_to_table(
                "baseline_postings", records=rows, columns=["event_id", "member_id", "amount"]
            )
        await batch[-1].ack(multiple=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
