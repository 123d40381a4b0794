"""The skeleton's money flow on the running system: an order placed over HTTP debits the
member's ledger account through RabbitMQ exactly once, and the balance event reaches any
subscriber bound to `cagette.events`."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika

from cagette_contracts.routing import EVENTS_EXCHANGE, ORDER_CONFIRMED
from cagette_runtime.consumer import PARKING_REASON_HEADER
from cagette_runtime.testing import EventSpy, drain_queue

from .conftest import bearer, client
from .groups import Group, Product


async def publish_raw(amqp_url: str, body: bytes, routing_key: str, message_id: str) -> None:
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
        )


async def test_order_over_http_debits_the_member_once_and_publishes_the_balance(stack) -> None:
    async with (
        EventSpy(stack.amqp_url, "orders.#", "ledger.#") as spy,
        client(stack, "orders") as orders,
        client(stack, "ledger") as ledger,
    ):
        group = await Group.create(orders, "AMAP des Lilas", payment_methods=["cheque"], cheque_payee="AMAP des Lilas")
        group_id = group.group_id
        member = await group.join("Alice")
        farm = await group.catalog(
            "Ferme du Pré",
            [Product("Panier de légumes", 1550), Product("Oeufs x6", 320), Product("Pain", 410)],
            kind="variable",
        )
        basket, eggs, bread = farm.product_ids
        distribution_id = await group.distribution([farm], "Préau")

        member_auth = group.member(member)
        placed = await group.order(member, distribution_id, "cheque", [(basket, "1"), (eggs, "2")])
        assert placed.status_code == 201, placed.text
        assert placed.json()["total"] == {"amount": 2190, "currency": "EUR"}
        order_id = placed.json()["order_id"]

        # The balance event, seen by a separate subscriber bound to cagette.events.
        [changed] = await spy.wait_for("ledger.balance.changed", member_id=str(member))
        assert changed.body["balance"] == {"amount": -2190, "currency": "EUR"}
        assert changed.body["previous_balance"] == {"amount": 0, "currency": "EUR"}
        [confirmed] = spy.matching(ORDER_CONFIRMED, order_id=order_id)
        # The correlation id follows the action from the HTTP request to the ledger's event.
        assert changed.body["correlation_id"] == confirmed.body["correlation_id"] == placed.headers["X-Correlation-ID"]
        await spy.wait_for("ledger.balance.went_negative", member_id=str(member))

        balance = await ledger.get(f"/groups/{group_id}/members/{member}/balance", headers=member_auth)
        assert balance.status_code == 200
        assert balance.json()["balance"] == {"amount": -2190, "currency": "EUR"}

        # A poison message is parked with its reason; a duplicate of the confirmed order has no
        # second effect; the next valid order still flows.
        await publish_raw(
            stack.amqp_url,
            b'{"event_type": "orders.order.confirmed", "schema_version": 1, "total": 12.5}',
            ORDER_CONFIRMED,
            message_id="poison-1",
        )
        await publish_raw(stack.amqp_url, confirmed.raw.body, ORDER_CONFIRMED, message_id=confirmed.raw.message_id)
        # (one basket per member and distribution: the second order is an add-only amendment)
        second = await orders.put(
            f"/groups/{group_id}/orders/{order_id}",
            headers=member_auth,
            json={
                "lines": [
                    {"product_id": basket, "quantity": "1"},
                    {"product_id": eggs, "quantity": "2"},
                    {"product_id": bread, "quantity": "1"},
                ],
            },
        )
        assert second.status_code == 200, second.text
        await spy.wait_for("ledger.balance.changed", count=2, member_id=str(member))

        [parked] = await drain_queue(stack.amqp_url, "ledger.postings.parking")
        assert parked.message_id == "poison-1"
        assert "not a valid event" in parked.headers[PARKING_REASON_HEADER]

        await asyncio.sleep(1.0)  # room for a wrongly re-posted duplicate to show up
        posted = [m for m in spy.matching("ledger.transaction.posted") if m.body["group_id"] == str(group_id)]
        assert len(posted) == 2
        balance = await ledger.get(f"/groups/{group_id}/members/{member}/balance", headers=member_auth)
        assert balance.json()["balance"] == {"amount": -2600, "currency": "EUR"}

        # Nobody reads another member's account.
        other = await ledger.get(
            f"/groups/{group_id}/members/{member}/balance", headers=bearer(uuid.uuid4(), member_of=group_id)
        )
        assert other.status_code == 403


async def test_every_service_is_healthy_and_ready(stack) -> None:
    for name in stack.services:
        async with client(stack, name) as http:
            assert (await http.get("/health")).json()["status"] == "ok"
            ready = await http.get("/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
            spec = await http.get("/asyncapi.json")
            assert spec.status_code == 200 and spec.json()["asyncapi"] == "3.1.0"
