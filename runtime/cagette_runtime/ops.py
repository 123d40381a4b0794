"""`cagette-ops`: the operator's command for parked messages and broker policies.

    cagette-ops parked list                               queues, counts, reasons
    cagette-ops parked show QUEUE MESSAGE_ID              one message: headers and body
    cagette-ops parked replay QUEUE (--all | --id ID ... | --reason TEXT | --routing-key KEY)
    cagette-ops parked drop QUEUE (--all | --id ...) --why "reason"
    cagette-ops policies show | cagette-ops policies set-delivery-limit N
    cagette-ops history                                   who did what, newest last

A parked message goes back where it failed: a parking queue's message to its consumer's queue
(`ledger.postings.parking` -> `ledger.postings`), an unrouted event to `cagette.events` with its
original routing key. Replaying is safe: every consumer records the event ids it processed (the
inbox), so a message replayed twice, or one processed before it was parked, has no second effect.
Every replay and drop is recorded, with who did it, in the durable queue `cagette.operations-log`
(read with `history`) and printed.

Browsing takes messages without acknowledging them and gives back the ones not acted on when the
command ends, so a message being looked at is not lost if the command dies.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import socket
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from cagette_contracts.routing import EVENTS_EXCHANGE

from . import clock
from .broker_admin import BrokerAdmin
from .consumer import PARKING_REASON_HEADER
from .settings import DEFAULT_AMQP_URL
from .topology import UNROUTED_QUEUE

OPERATIONS_LOG_QUEUE = "cagette.operations-log"
OPERATIONS_LOG_MAX_LENGTH = 100_000
PARKING_SUFFIX = ".parking"
# Headers of the failed attempt, not of the event: a replayed message starts afresh.
ATTEMPT_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
    PARKING_REASON_HEADER,
    "x-parked-by",
    "x-parked-at",
    "x-unroutable-reason",
    "x-original-routing-key",
)


def is_parking_queue(name: str) -> bool:
    return name.endswith(PARKING_SUFFIX) or name == UNROUTED_QUEUE


def reason_of(message: AbstractIncomingMessage) -> str:
    headers = message.headers or {}
    for key in (PARKING_REASON_HEADER, "x-unroutable-reason"):
        if headers.get(key):
            return str(headers[key])
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        death = deaths[0]
        reason, count, queue = (_plain(death.get(key)) for key in ("reason", "count", "queue"))
        return f"{reason} after {count} deaths in {queue}"
    return "no reason recorded"


def original_routing_key(message: AbstractIncomingMessage) -> str:
    headers = message.headers or {}
    if headers.get("x-original-routing-key"):
        return str(headers["x-original-routing-key"])
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        keys = deaths[0].get("routing-keys")
        if isinstance(keys, list) and keys:
            return str(keys[0])
    return message.routing_key or ""


@dataclass
class Selection:
    everything: bool = False
    ids: Sequence[str] = ()
    reason: str | None = None
    routing_key: str | None = None

    def matches(self, message: AbstractIncomingMessage) -> bool:
        if self.everything:
            return True
        if self.ids and (message.message_id or "") not in self.ids:
            return False
        if self.reason and self.reason.lower() not in reason_of(message).lower():
            return False
        if self.routing_key and original_routing_key(message) != self.routing_key:
            return False
        return bool(self.ids or self.reason or self.routing_key)


class Operations:
    def __init__(self, amqp_url: str, operator: str) -> None:
        self.amqp_url = amqp_url
        self.operator = operator
        self.admin = BrokerAdmin(amqp_url, mode=os.environ.get("CAGETTE_BROKER_POLICIES", "auto"))

    async def __aenter__(self) -> Operations:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def browse(self, channel: AbstractChannel, queue_name: str, limit: int) -> list[AbstractIncomingMessage]:
        """Up to `limit` messages, taken unacknowledged (given back when the channel closes)."""
        queue = await channel.get_queue(queue_name, ensure=True)
        taken: list[AbstractIncomingMessage] = []
        while len(taken) < limit:
            message = await queue.get(no_ack=False, fail=False, timeout=5)
            if message is None:
                break
            taken.append(message)
        return taken

    async def parked(self, limit: int) -> list[tuple[str, int, Counter[str]]]:
        """Each parking queue with its count (read over AMQP: the admin interfaces' counts lag)."""
        found = []
        for name in sorted(n for n in await self.admin.queues() if is_parking_queue(n)):
            channel = await self.connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                count = queue.declaration_result.message_count or 0
                reasons = Counter(reason_of(message) for message in await self.browse(channel, name, limit))
            finally:
                await channel.close()
            found.append((name, count, reasons))
        return found

    async def show(self, queue_name: str, message_id: str, limit: int) -> dict[str, Any] | None:
        channel = await self.connection.channel()
        try:
            for message in await self.browse(channel, queue_name, limit):
                if message.message_id == message_id:
                    return describe(message, with_body=True)
        finally:
            await channel.close()
        return None

    async def act(
        self, action: str, queue_name: str, selection: Selection, limit: int, why: str = ""
    ) -> dict[str, Any]:
        """Replay or drop the selected messages of `queue_name`; returns (and records) what was done."""
        if not is_parking_queue(queue_name):
            raise SystemExit(f"{queue_name} is not a parking queue (*.parking or {UNROUTED_QUEUE})")
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        done: list[str] = []
        failed: dict[str, str] = {}
        try:
            events = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
            for message in await self.browse(channel, queue_name, limit):
                if not selection.matches(message):
                    continue
                message_id = message.message_id or f"(no id, delivery {message.delivery_tag})"
                if action == "replay":
                    try:
                        await self._replay(channel, events, queue_name, message)
                    except Exception as exc:
                        failed[message_id] = f"{type(exc).__name__}: {exc}"
                        continue
                await message.ack()
                done.append(message_id)
        finally:
            await channel.close()  # gives back every message not acted on
        record = {
            "at": clock.now().isoformat(),
            "operator": self.operator,
            "host": socket.gethostname(),
            "action": action,
            "queue": queue_name,
            "selection": {k: v for k, v in vars(selection).items() if v},
            "why": why,
            "message_ids": done,
            "failed": failed,
        }
        await self.record(record)
        return record

    async def _replay(
        self, channel: AbstractChannel, events: aio_pika.abc.AbstractExchange, queue_name: str, message: Any
    ) -> None:
        headers = {k: v for k, v in (message.headers or {}).items() if k not in ATTEMPT_HEADERS}
        headers.update({"x-replayed-by": self.operator, "x-replayed-from": queue_name})
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            timestamp=message.timestamp,
            app_id=message.app_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        if queue_name == UNROUTED_QUEUE:
            # Still unroutable (nobody subscribes yet): the broker returns it and it stays parked.
            await events.publish(copy, routing_key=original_routing_key(message), mandatory=True)
        else:
            consumer_queue = queue_name.removesuffix(PARKING_SUFFIX)
            await channel.default_exchange.publish(copy, routing_key=consumer_queue, mandatory=True)

    async def record(self, record: dict[str, Any]) -> None:
        channel = await self.connection.channel(publisher_confirms=True)
        try:
            await channel.declare_queue(
                OPERATIONS_LOG_QUEUE,
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-max-length": OPERATIONS_LOG_MAX_LENGTH,
                    "x-overflow": "drop-head",
                },
            )
            await channel.default_exchange.publish(
                aio_pika.Message(
                    json.dumps(record).encode(),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=OPERATIONS_LOG_QUEUE,
            )
        finally:
            await channel.close()

    async def history(self, limit: int) -> list[dict[str, Any]]:
        channel = await self.connection.channel()
        try:
            if OPERATIONS_LOG_QUEUE not in await self.admin.queues():
                return []
            return [json.loads(m.body) for m in await self.browse(channel, OPERATIONS_LOG_QUEUE, limit)]
        finally:
            await channel.close()

    async def set_delivery_limit(self, limit: int) -> list[str]:
        """Change the delivery limit of every consumer queue's policy, live."""
        from .broker_admin import POLICY_PREFIX, Policy

        changed = []
        for current in await self.admin.current():
            if not str(current["name"]).startswith(POLICY_PREFIX):
                continue
            definition = {**current["definition"], "delivery-limit": limit}
            policy = Policy(
                name=current["name"],
                pattern=current["pattern"],
                definition=definition,
                apply_to=current.get("apply-to", "queues"),
                priority=int(current.get("priority", 0)),
            )
            await self.admin.apply(policy)
            changed.append(policy.name)
        await self.record(
            {
                "at": clock.now().isoformat(),
                "operator": self.operator,
                "host": socket.gethostname(),
                "action": "set-delivery-limit",
                "delivery_limit": limit,
                "policies": changed,
            }
        )
        return changed


def describe(message: AbstractIncomingMessage, *, with_body: bool = False) -> dict[str, Any]:
    described: dict[str, Any] = {
        "message_id": message.message_id,
        "correlation_id": message.correlation_id,
        "routing_key": original_routing_key(message),
        "reason": reason_of(message),
        "headers": {k: _plain(v) for k, v in (message.headers or {}).items()},
    }
    if with_body:
        try:
            described["body"] = json.loads(message.body)
        except ValueError:
            described["body"] = message.body.decode(errors="replace")
    return described


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _selection(args: argparse.Namespace) -> Selection:
    selection = Selection(everything=args.all, ids=args.id or (), reason=args.reason, routing_key=args.routing_key)
    if not (selection.everything or selection.ids or selection.reason or selection.routing_key):
        raise SystemExit("say which messages: --all, --id ID (repeatable), --reason TEXT or --routing-key KEY")
    return selection


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cagette-ops", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--amqp-url", default=os.environ.get("CAGETTE_AMQP_URL", DEFAULT_AMQP_URL))
    parser.add_argument(
        "--operator",
        default=os.environ.get("CAGETTE_OPERATOR") or getpass.getuser(),
        help="who is acting, for the record (default: $CAGETTE_OPERATOR or the login name)",
    )
    parser.add_argument("--limit", type=int, default=10_000, help="at most this many messages looked at per queue")
    commands = parser.add_subparsers(dest="command", required=True)
    parked = commands.add_parser("parked", help="parking queues and cagette.unrouted").add_subparsers(
        dest="action", required=True
    )
    parked.add_parser("list", help="each parking queue with its count and reasons")
    show = parked.add_parser("show", help="one message: headers and body")
    show.add_argument("queue")
    show.add_argument("message_id")
    for name, text in (("replay", "send messages back to their original route"), ("drop", "delete messages")):
        sub = parked.add_parser(name, help=text)
        sub.add_argument("queue")
        sub.add_argument("--all", action="store_true")
        sub.add_argument("--id", action="append", help="a message id (repeatable)")
        sub.add_argument("--reason", help="messages whose reason contains this text")
        sub.add_argument("--routing-key", help="messages of this event type")
        sub.add_argument("--why", default="", required=name == "drop", help="why, for the record")
    policies = commands.add_parser("policies", help="the consumer queues' broker policies").add_subparsers(
        dest="action", required=True
    )
    policies.add_parser("show")
    limit = policies.add_parser("set-delivery-limit", help="change every consumer queue's delivery limit, live")
    limit.add_argument("delivery_limit", type=int)
    commands.add_parser("history", help="who replayed or dropped what, and when")
    return parser


async def run(args: argparse.Namespace) -> int:
    async with Operations(args.amqp_url, args.operator) as ops:
        if args.command == "parked" and args.action == "list":
            for name, count, reasons in await ops.parked(args.limit):
                print(f"{name}: {count} message(s)")
                for reason, seen in reasons.most_common():
                    print(f"  {seen} x {reason}")
        elif args.command == "parked" and args.action == "show":
            found = await ops.show(args.queue, args.message_id, args.limit)
            if found is None:
                print(f"no message {args.message_id} in {args.queue}", file=sys.stderr)
                return 1
            print(json.dumps(found, indent=2, default=str))
        elif args.command == "parked":
            record = await ops.act(args.action, args.queue, _selection(args), args.limit, why=args.why)
            print(json.dumps(record, indent=2))
            return 1 if record["failed"] else 0
        elif args.command == "policies" and args.action == "show":
            print(json.dumps(await ops.admin.current(), indent=2))
        elif args.command == "policies":
            for name in await ops.set_delivery_limit(args.delivery_limit):
                print(f"{name}: delivery-limit {args.delivery_limit}")
        elif args.command == "history":
            for entry in await ops.history(args.limit):
                print(json.dumps(entry))
    return 0


def main(argv: list[str] | None = None) -> None:
    sys.exit(asyncio.run(run(build_parser().parse_args(argv))))


if __name__ == "__main__":
    main()
