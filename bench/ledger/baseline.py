"""The bare baselines the ledger is measured against: plain aio-pika consumers taking batches of
200 deliveries, writing them in one asyncpg transaction and acking them (multiple=True). No
framework, no inbox table, no outbox.

* `copy`: one COPY of the batch into a table: the floor of what a consumer on this machine costs.
* `strict`: what a ledger minimally must do: idempotent transactions (a unique key per event,
  a redelivery writes nothing), two postings per transaction (member debit, sales credit), and
  each member's balance updated under FOR UPDATE, accounts locked in a fixed order.

Run by run.py as a subprocess: python baseline.py MODE AMQP_URL POSTGRES_DSN QUEUE
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections import defaultdict

import aio_pika
import asyncpg

BATCH = 200

COPY_SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_postings (event_id uuid PRIMARY KEY, member_id uuid NOT NULL,
    amount bigint NOT NULL, written_at timestamptz NOT NULL DEFAULT clock_timestamp())
"""
STRICT_SCHEMA = """
CREATE TABLE IF NOT EXISTS strict_accounts (account_id uuid PRIMARY KEY, balance bigint NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS strict_transactions (transaction_id bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE,
    member_id uuid NOT NULL, amount bigint NOT NULL, written_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS strict_postings (posting_id bigserial PRIMARY KEY,
    transaction_id bigint NOT NULL REFERENCES strict_transactions, account_id uuid NOT NULL
    REFERENCES strict_accounts, amount bigint NOT NULL);
"""
SALES = uuid.UUID(int=1)  # the group's sales account, credited by every order


async def write_copy(db: asyncpg.Connection, rows: list[tuple[uuid.UUID, uuid.UUID, int]]) -> None:
    await db.copy_records_to_table("baseline_postings", records=rows, columns=["event_id", "member_id", "amount"])


async def write_strict(db: asyncpg.Connection, rows: list[tuple[uuid.UUID, uuid.UUID, int]]) -> None:
    written = await db.fetch(
        "INSERT INTO strict_transactions (event_id, member_id, amount)"
        " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[])"
        " ON CONFLICT (event_id) DO NOTHING RETURNING transaction_id, member_id, amount",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )
    if not written:
        return
    deltas: dict[uuid.UUID, int] = defaultdict(int)
    for row in written:
        deltas[row["member_id"]] += row["amount"]
        deltas[SALES] -= row["amount"]
    accounts = sorted(deltas)
    await db.execute(
        "INSERT INTO strict_accounts (account_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING", accounts
    )
    await db.execute(
        "SELECT 1 FROM strict_accounts WHERE account_id = ANY($1::uuid[]) ORDER BY account_id FOR UPDATE", accounts
    )
    await db.execute(
        "INSERT INTO strict_postings (transaction_id, account_id, amount)"
        " SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bigint[])",
        [row["transaction_id"] for row in written for _ in (0, 1)],
        [account for row in written for account in (row["member_id"], SALES)],
        [amount for row in written for amount in (row["amount"], -row["amount"])],
    )
    await db.execute(
        "UPDATE strict_accounts a SET balance = a.balance + d.delta"
        " FROM unnest($1::uuid[], $2::bigint[]) AS d(account_id, delta) WHERE a.account_id = d.account_id",
        accounts,
        [deltas[a] for a in accounts],
    )


async def main(mode: str, amqp_url: str, dsn: str, queue_name: str) -> None:
    write = {"copy": write_copy, "strict": write_strict}[mode]
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    await pool.execute(COPY_SCHEMA if mode == "copy" else STRICT_SCHEMA)
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
            await write(db, rows)
        await batch[-1].ack(multiple=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
