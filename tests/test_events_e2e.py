"""What an outside system can build on (issue 17), checked as such a system would: its own queue
bound to `cagette.events` with `#`, the exported JSON Schemas checked with jsonschema (not
Pydantic), while members order and pay concurrently on the running services.

- every event validates against its exported schema, and every broken copy of it fails;
- each event's correlation id is its cause's (the HTTP request that started the action), even
  when the ledger posts many members' events in one batch;
- per account, the ledger's sequences have no gap;
- a consumer started after the flow replays it from the event log stream and rebuilds the
  ledger's balances;
- a webhook receiver (a local HTTP server) down while the flow starts gets every event of the
  group once it is back, each signed (Standard Webhooks, verified with the library).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from cagette_runtime.testing import EventSpy, PublishedSchemas, SeenMessage, WebhookReceiver, broken_copies

from .conftest import bearer, client, eventually

MEMBERS = 6

# The documented example consumer, run as a late subscriber would run it.
_spec = importlib.util.spec_from_file_location(
    "replay_balances_example", Path(__file__).resolve().parent.parent / "examples" / "replay_balances.py"
)
assert _spec and _spec.loader
replay_example = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(replay_example)


def eur(cents: int) -> dict[str, Any]:
    return {"amount": cents, "currency": "EUR"}


async def post(http: httpx.AsyncClient, url: str, auth: dict[str, str], body: dict[str, Any], cause: str) -> Any:
    answer = await http.post(url, headers={**auth, "X-Correlation-ID": cause}, json=body)
    assert answer.status_code in (200, 201), answer.text
    assert answer.headers["X-Correlation-ID"] == cause
    return answer.json()


class Flow:
    """Members of one group ordering and paying at the same time, each action with its own
    correlation id (the cause of what follows)."""

    def __init__(self, stack: Any, receiver: WebhookReceiver) -> None:
        self.stack = stack
        self.receiver = receiver
        self.admin, self.coordinator = uuid.uuid4(), uuid.uuid4()
        self.members = [uuid.uuid4() for _ in range(MEMBERS)]
        self.order_cause: dict[str, str] = {}  # order id -> correlation id of the request that placed it
        self.payment_cause: dict[str, str] = {}  # payment id -> correlation id of the confirmation

    async def run(self) -> None:
        async with client(self.stack, "orders") as orders, client(self.stack, "payments") as payments:
            group = await post(
                orders,
                "/groups",
                bearer(self.admin, admin=True),
                {"name": "AMAP des Lilas", "currency": "EUR", "payment_methods": ["cheque", "on_the_spot"]}
                | {"cheque_payee": "AMAP des Lilas"},
                "setup-group",
            )
            self.group = group["group_id"]
            admin = bearer(self.admin, admin=True)
            coord = bearer(self.coordinator, coordinator_of=uuid.UUID(self.group))
            async with client(self.stack, "notifications") as notifications:
                endpoint = await post(
                    notifications,
                    "/webhooks/endpoints",
                    coord,
                    {
                        "group_id": self.group,
                        "url": self.receiver.url,
                        "event_types": ["orders.#", "payments.#", "ledger.#"],
                    },
                    "setup-webhook",
                )
            self.webhook_secret = endpoint["secret"]
            self.webhook_since = datetime.now(UTC)
            for n, member in enumerate(self.members):
                await post(
                    orders,
                    f"/groups/{self.group}/members",
                    admin,
                    {"member_id": str(member), "name": f"Member {n}", "email": f"member{n}@example.org"},
                    f"setup-member-{n}",
                )
            shop = await post(
                orders,
                f"/groups/{self.group}/catalogs",
                coord,
                {
                    "name": "Farm",
                    "products": [
                        {"name": "Cheese", "unit_price": 1250},
                        {"name": "Eggs", "unit_price": 320, "unit": "kg"},
                    ],
                },
                "setup-catalog",
            )
            self.catalog = shop["catalog_id"]
            await post(
                orders,
                f"/groups/{self.group}/catalogs/{self.catalog}/products",
                coord,
                {"name": "Honey", "unit_price": 780, "fee_rate": "0.02"},
                "setup-product",
            )
            distribution = await post(
                orders,
                f"/groups/{self.group}/distributions",
                coord,
                {
                    "starts_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
                    "place": "Market hall",
                    "catalog_ids": [shop["catalog_id"]],
                },
                "setup-distribution",
            )
            self.distribution = distribution["distribution_id"]
            cheese, eggs = (p["product_id"] for p in shop["products"])

            async def order(n: int, member: uuid.UUID) -> None:
                cause = f"order-{n}-{uuid.uuid4().hex[:8]}"
                placed = await post(
                    orders,
                    f"/groups/{self.group}/orders",
                    bearer(member, member_of=uuid.UUID(self.group)),
                    {
                        "distribution_id": self.distribution,
                        "payment_method": "cheque" if n % 2 else "on_the_spot",
                        "lines": [
                            {"product_id": cheese, "quantity": str(1 + n % 3)},
                            {"product_id": eggs, "quantity": "0.5" if n % 2 else "2"},
                        ],
                    },
                    cause,
                )
                self.order_cause[placed["order_id"]] = cause

            await asyncio.gather(*(order(n, member) for n, member in enumerate(self.members)))

            async def declared(member: uuid.UUID) -> dict[str, Any] | None:
                listed = (
                    await payments.get(
                        f"/groups/{self.group}/members/{member}/payments",
                        headers=bearer(member, member_of=uuid.UUID(self.group)),
                    )
                ).json()
                if not isinstance(listed, list):  # an error answer (the member not known there yet): ask again
                    return None
                return next((p for p in listed if p["state"] == "declared"), None)

            expected = [await eventually(lambda member=member: declared(member)) for member in self.members]

            async def pay(n: int, payment: dict[str, Any]) -> None:
                cause = f"payment-{n}-{uuid.uuid4().hex[:8]}"
                # Even members pay less than owed, so some balances stay negative.
                amount = payment["amount"]["amount"] - (100 if n % 2 == 0 else 0)
                await post(
                    payments,
                    f"/groups/{self.group}/payments/{payment['payment_id']}/confirm",
                    coord,
                    {"amount": eur(amount), "label": f"payment {n}"}
                    | ({"method": "cash"} if payment["method"] == "on_the_spot" else {}),
                    cause,
                )
                self.payment_cause[payment["payment_id"]] = cause

            self.paying_since = datetime.now(UTC)
            await asyncio.gather(*(pay(n, payment) for n, payment in enumerate(expected)))

    async def balances(self) -> dict[str, int]:
        coord = bearer(self.coordinator, coordinator_of=uuid.UUID(self.group))
        async with client(self.stack, "ledger") as ledger:
            answers = [
                (await ledger.get(f"/groups/{self.group}/members/{member}/balance", headers=coord)).json()
                for member in self.members
            ]
        return {str(member): answer["balance"]["amount"] for member, answer in zip(self.members, answers, strict=True)}


async def _async(value: Any) -> Any:
    return value


def of_group(spy: EventSpy, group: str) -> list[SeenMessage]:
    return [m for m in spy.messages if m.body.get("group_id") == group]


async def test_events_validate_and_carry_their_causes_correlation_id(stack: Any) -> None:
    schemas = PublishedSchemas()
    async with EventSpy(stack.amqp_url, "#") as spy, WebhookReceiver() as receiver:
        receiver.up = False  # down while the flow starts: deliveries wait and are retried
        flow = Flow(stack, receiver)
        await flow.run()
        assert receiver.refused > 0
        receiver.up = True
        # Every member's payment posted: the flow has settled.
        await spy.wait_for("ledger.transaction.posted", count=2 * MEMBERS, timeout=30, group_id=flow.group)
        await asyncio.sleep(0.5)
        wanted = {
            m.body["event_id"]
            for m in of_group(spy, flow.group)
            if m.routing_key.split(".")[0] != "notifications"
            and datetime.fromisoformat(m.body["occurred_at"]) > flow.webhook_since  # registered after the group
        }
        assert len(wanted) > 4 * MEMBERS
        await eventually(lambda: _async(wanted <= {r.headers["webhook-id"] for r in receiver.accepted}), timeout=30)
        webhooks = list(receiver.accepted)
    events = of_group(spy, flow.group)
    assert {m.routing_key for m in events} >= {
        "orders.group.settings_changed",
        "orders.member.joined",
        "orders.catalog.created",
        "orders.product.created",
        "orders.distribution.created",
        "orders.order.confirmed",
        "payments.payment.declared",
        "payments.payment.received",
        "ledger.transaction.posted",
        "ledger.balance.changed",
        "ledger.balance.went_negative",
    }

    # Every event validates against its exported schema; every broken copy of it fails.
    for message in events:
        assert message.body["event_type"] == message.routing_key
        assert schemas.errors(message.body) == [], (message.routing_key, schemas.errors(message.body))
        for what, copy in broken_copies(message.body):
            assert schemas.errors(copy), f"{message.routing_key} {what} validated"

    # Each event carries its cause's correlation id: the request that placed the order or
    # confirmed the payment, through orders, payments and the ledger's batched postings.
    cause_of_transaction = {}
    for message in events:
        body = message.body
        if message.routing_key == "orders.order.confirmed":
            assert body["correlation_id"] == flow.order_cause[body["order_id"]]
        elif message.routing_key.split(".")[1] in ("catalog", "product", "distribution"):
            assert body["correlation_id"] == f"setup-{message.routing_key.split('.')[1]}"
        elif message.routing_key == "payments.payment.declared":
            assert body["correlation_id"] == flow.order_cause[body["order_id"]]
        elif message.routing_key == "payments.payment.received":
            assert body["correlation_id"] == flow.payment_cause[body["payment_id"]]
        elif message.routing_key == "ledger.transaction.posted":
            source, source_id, _ = body["idempotency_key"].split(":")
            cause = flow.order_cause[source_id] if source == "order" else flow.payment_cause[source_id]
            assert body["correlation_id"] == cause, body["idempotency_key"]
            cause_of_transaction[body["transaction_id"]] = cause
        assert message.raw.correlation_id == body["correlation_id"]
    for message in events:
        if message.routing_key.startswith("ledger.balance."):
            assert message.body["correlation_id"] == cause_of_transaction[message.body["transaction_id"]]

    # Per account, the ledger's events are numbered 1, 2, 3... with no gap and no repeat.
    numbered: dict[str, list[int]] = {}
    for message in events:
        if message.routing_key == "ledger.balance.changed":
            numbered.setdefault(message.body["account_id"], []).append(message.body["sequence"])
    assert len(numbered) == MEMBERS
    for sequences in numbered.values():
        assert sorted(sequences) == list(range(1, len(sequences) + 1))
    for message in events:
        if message.routing_key == "ledger.transaction.posted":
            for line in message.body["postings"]:
                if line["member_id"]:
                    assert line["sequence"] in numbered[line["account_id"]]

    # The catalog, its added product and the distribution, once each, with what a subscriber shows.
    reference = {m.routing_key: m.body for m in events if m.routing_key.split(".")[1] in ("catalog", "product")}
    reference |= {m.routing_key: m.body for m in events if m.routing_key == "orders.distribution.created"}
    assert len([m for m in events if m.routing_key in reference]) == 3
    assert [(p["name"], p["unit"], p["unit_price"]) for p in reference["orders.catalog.created"]["products"]] == [
        ("Cheese", "piece", eur(1250)),
        ("Eggs", "kg", eur(320)),
    ]
    assert reference["orders.product.created"]["catalog"]["catalog_id"] == flow.catalog
    assert reference["orders.product.created"]["product"]["fee_rate"] == "0.02"
    distribution = reference["orders.distribution.created"]
    assert (distribution["distribution_id"], distribution["place"]) == (flow.distribution, "Market hall")
    assert distribution["catalogs"] == [{"catalog_id": flow.catalog, "name": "Farm", "kind": "variable"}]

    # A consumer started after the flow replays it from the log and rebuilds the ledger's balances.
    rebuilt, logged, replayed_reference = replay_example.Balances(), set(), set()

    def handle(event: dict[str, Any]) -> None:
        logged.add(event["event_id"])
        if event["event_id"] in {body["event_id"] for body in reference.values()}:
            replayed_reference.add(event["event_type"])
        rebuilt.apply(event)

    read = await replay_example.replay(stack.amqp_url, handle, "first", idle=1.5)
    assert read >= len(events)
    assert {m.body["event_id"] for m in events} <= logged  # every event is in the log
    assert replayed_reference == set(reference)  # catalogs, products and distributions too
    replayed = {a.member_id: a.balance for a in rebuilt.accounts.values() if a.group_id == flow.group}
    assert replayed == await flow.balances()
    assert all(not a.gaps() for a in rebuilt.accounts.values() if a.group_id == flow.group)

    # From a point in time: at least everything since then (the log starts at a chunk boundary).
    since: set[str] = set()
    await replay_example.replay(stack.amqp_url, lambda e: since.add(e["event_id"]), flow.paying_since, idle=1.5)
    assert {m.body["event_id"] for m in events if m.routing_key == "payments.payment.received"} <= since

    # The webhook receiver got them all, signed; the body is the event, with its correlation id.
    verifier = Webhook(flow.webhook_secret)
    by_id = {m.body["event_id"]: m.body for m in events}
    for delivery in webhooks:
        body = verifier.verify(delivery.body, delivery.headers)
        assert body["event_id"] == delivery.headers["webhook-id"]
        if body["event_id"] in by_id:
            assert body["correlation_id"] == by_id[body["event_id"]]["correlation_id"]
