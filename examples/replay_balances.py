"""Replay the event log and rebuild every member's balance from the ledger's events alone.

What another system does to catch up, after joining late or losing its own queue: read the
stream `cagette.events.log` (every event published on `cagette.events`, kept by age and size)
from an offset or a point in time, with any AMQP 0-9-1 client (here aio-pika), no Cagette code.

    python examples/replay_balances.py                       # from the start of the log
    python examples/replay_balances.py --from 2026-12-01T00:00:00Z
    python examples/replay_balances.py --from 1200           # from that offset
    CAGETTE_AMQP_URL=amqp://user:pass@host:5672/vhost python examples/replay_balances.py

It prints one line per member account: group, member, balance in minor units, currency and
the last sequence seen; and it says so if an account's sequences have a gap (an event missing
from the replayed part of the log). It stops once the log has been idle for `--idle` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aio_pika

EVENT_LOG = "cagette.events.log"


@dataclass
class Account:
    group_id: str
    member_id: str
    balance: int = 0
    currency: str = ""
    sequences: set[int] = field(default_factory=set)

    @property
    def last_sequence(self) -> int:
        return max(self.sequences, default=0)

    def gaps(self) -> list[int]:
        """Sequences missing between the first and the last seen."""
        if not self.sequences:
            return []
        return sorted(set(range(min(self.sequences), self.last_sequence + 1)) - self.sequences)


@dataclass
class Balances:
    """Member balances rebuilt from `ledger.balance.changed`: per account the event with the
    highest sequence wins, so redelivered or out-of-order events change nothing."""

    accounts: dict[str, Account] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # event ids: the log is at-least-once

    def apply(self, event: dict[str, Any]) -> None:
        if event.get("event_id") in self.seen or event.get("event_type") != "ledger.balance.changed":
            return
        self.seen.add(event["event_id"])
        account = self.accounts.setdefault(event["account_id"], Account(event["group_id"], event["member_id"]))
        sequence = event.get("sequence") or 0
        if sequence >= account.last_sequence:
            account.balance = event["balance"]["amount"]
            account.currency = event["balance"]["currency"]
        if sequence:
            account.sequences.add(sequence)


def stream_offset(text: str) -> str | int | datetime:
    """`first`, `last`, `next`, an offset (integer) or an ISO 8601 time (RabbitMQ then starts at
    the first chunk at or before it)."""
    if text in ("first", "last", "next"):
        return text
    if text.isascii() and text.isdigit():
        return int(text)
    return datetime.fromisoformat(text)


async def replay(
    amqp_url: str, handle: Any, start: str | int | datetime = "first", idle: float = 2.0, prefetch: int = 500
) -> int:
    """Read the log from `start`, calling `handle(event)` for each; return how many were read."""
    connection = await aio_pika.connect_robust(amqp_url)
    read = 0
    last_arrival = asyncio.get_running_loop().time()
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)  # a stream needs a prefetch and acks
        log = await channel.get_queue(EVENT_LOG, ensure=True)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal read, last_arrival
            try:
                event = json.loads(message.body)
            except ValueError:
                event = None
            # The log keeps whatever was published, poison included: what is not an event is skipped.
            if isinstance(event, dict) and "event_id" in event:
                handle(event)
            read += 1
            last_arrival = asyncio.get_running_loop().time()
            await message.ack()

        tag = await log.consume(on_message, arguments={"x-stream-offset": start})
        while asyncio.get_running_loop().time() - last_arrival < idle:
            await asyncio.sleep(0.1)
        await log.cancel(tag)
    finally:
        await connection.close()
    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="start", default="first", type=stream_offset, help="first|last|next|N|time")
    parser.add_argument("--idle", type=float, default=2.0, help="stop after this many seconds without an event")
    parser.add_argument("--url", default=os.environ.get("CAGETTE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    args = parser.parse_args()
    balances = Balances()
    count = asyncio.run(replay(args.url, balances.apply, args.start, args.idle))
    print(f"{count} events read")
    for account in sorted(balances.accounts.values(), key=lambda a: (a.group_id, a.member_id)):
        gaps = f"  GAPS {account.gaps()}" if account.gaps() else ""
        amount = f"{account.balance} {account.currency}"
        print(f"{account.group_id} {account.member_id} {amount} #{account.last_sequence}{gaps}")


if __name__ == "__main__":
    main()
