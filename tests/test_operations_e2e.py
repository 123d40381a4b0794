"""What an operator relies on, on the running system: one member action is one trace across the
services (exported over OTLP/HTTP to a collector in this test), /metrics on every service moves
under load, and a parked message replayed with `cagette-ops` is posted by the ledger once."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aio_pika
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from cagette_contracts import Money, OrderConfirmed, OrderLine, PaymentMethod
from cagette_contracts.money import line_amount
from cagette_runtime.consumer import PARKING_REASON_HEADER
from cagette_runtime.devstack import Stack
from cagette_runtime.testing import EventSpy, IsolatedServers

from .conftest import bearer, client, eventually, running_stack
from .groups import Group, Product, order_body


@dataclass
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str


class Collector:
    """An OTLP/HTTP trace receiver on a free local port (what an OpenTelemetry collector is)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
                for resource_spans in request.resource_spans:
                    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            collector.spans.append(
                                Span(
                                    attributes.get("service.name", ""),
                                    span.name,
                                    span.trace_id.hex(),
                                    span.span_id.hex(),
                                    span.parent_span_id.hex(),
                                )
                            )
                body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def trace(self, trace_id: str) -> list[Span]:
        return [span for span in self.spans if span.trace_id == trace_id]


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.server.shutdown()


@pytest.fixture(scope="module")
async def ops_stack(servers: IsolatedServers, collector: Collector) -> AsyncIterator[Stack]:
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    async with running_stack(servers, "ops", extra_env=otel) as running:
        yield running


@dataclass
class Basket:
    group_id: uuid.UUID
    member_id: uuid.UUID
    distribution_id: str
    product_id: str


async def open_group(stack: Stack) -> Basket:
    """A group (cheques), its member, a one-product catalog and a distribution in three days."""
    async with client(stack, "orders") as orders:
        group = await Group.create(orders, "AMAP du Canal", payment_methods=["cheque"], cheque_payee="AMAP")
        member = await group.join("Inès", email="ines@example.org")
        catalog = await group.catalog("Ferme", [Product("Panier", 1200)], kind="variable")
        distribution_id = await group.distribution([catalog], "Halle")
    async with client(stack, "ledger") as ledger:
        # The ledger has taken the group and its member in: the order's events then reach it on
        # their own, not batched with these (statements of a batch of several actions are in none).
        async def member_known() -> bool:
            answer = await ledger.get(f"/groups/{group.group_id}/members/{member}/balance", headers=group.coordinator)
            return answer.status_code == 200

        await eventually(member_known)
    return Basket(group.group_id, member, distribution_id, catalog.product_ids[0])


async def place_order(stack: Stack, basket: Basket) -> dict[str, object]:
    async with client(stack, "orders") as orders:
        placed = await orders.post(
            f"/groups/{basket.group_id}/orders",
            headers=bearer(basket.member_id, member_of=basket.group_id),
            json=order_body(basket.distribution_id, "cheque", [(basket.product_id, "1")]),
        )
    assert placed.status_code == 201, placed.text
    return dict(placed.json())


async def test_one_member_action_is_one_trace_from_orders_through_ledger_to_notifications(
    ops_stack: Stack, collector: Collector
) -> None:
    basket = await open_group(ops_stack)
    await place_order(ops_stack, basket)

    def order_trace() -> str | None:
        for span in collector.spans:
            if span.service == "cagette-orders" and span.name == "POST /groups/{group_id}/orders":
                return span.trace_id
        return None

    trace_id = await eventually(lambda: asyncio.sleep(0, order_trace()))

    def whole_trace() -> list[Span] | None:
        """The trace once it reached ledger and notifications and every parent has arrived (the
        services export in batches, a parent after its children)."""
        spans = collector.trace(trace_id)
        known = {span.span_id for span in spans}
        consumers = {span.service for span in spans if span.name.endswith(" process")}
        roots = [span for span in spans if span.parent_id not in known]
        # The ledger's statements may come in a later export batch than its "process" span.
        ledger_statements = {span.name.split()[0] for span in spans if span.service == "cagette-ledger"}
        complete = (
            {"cagette-ledger", "cagette-notifications"} <= consumers
            and len(roots) == 1
            and {"INSERT", "SELECT"} <= ledger_statements
        )
        return spans if complete else None

    spans = await eventually(lambda: asyncio.sleep(0, whole_trace()))
    # One tree, rooted at the member's HTTP request to orders.
    [root] = [span for span in spans if not span.parent_id]
    assert (root.service, root.name) == ("cagette-orders", "POST /groups/{group_id}/orders")
    statements = {span.name.split()[0] for span in spans if span.service == "cagette-ledger"}
    assert {"INSERT", "SELECT"} <= statements, sorted((span.service, span.name) for span in spans)


def metric_samples(text: str) -> dict[str, float]:
    """Each metric's samples summed by sample name."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


async def test_metrics_on_every_service_move_under_a_small_load(ops_stack: Stack) -> None:
    async def scrape() -> dict[str, dict[str, float]]:
        figures = {}
        for name in ops_stack.services:
            async with client(ops_stack, name) as http:
                answer = await http.get("/metrics")
                assert answer.status_code == 200
                figures[name] = metric_samples(answer.text)
        return figures

    before = await scrape()
    basket = await open_group(ops_stack)
    await place_order(ops_stack, basket)
    await asyncio.sleep(1.5)
    after = await scrape()

    for name in ops_stack.services:
        assert "cagette_outbox_pending_messages" in after[name]
        assert "cagette_parked_messages" in after[name]
    assert after["orders"]["http_requests_total"] > before["orders"].get("http_requests_total", 0)
    for name, metric in (
        ("ledger", "faststream_received_messages_total"),
        ("notifications", "faststream_received_messages_total"),
        ("orders", "cagette_outbox_published_messages_total"),
        ("ledger", "cagette_outbox_published_messages_total"),
    ):
        assert after[name][metric] > before[name].get(metric, 0), (name, metric)
    assert "cagette_ledger_holds_active" in after["ledger"]
    assert "cagette_notifications_emails_pending" in after["notifications"]
    assert "cagette_payments_pending_manual_payments" in after["payments"]


def cagette_ops(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cagette_runtime.ops", "--amqp-url", stack.amqp_url, "--operator", "camille", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_an_operator_replays_a_parked_order_and_the_ledger_posts_it_once(ops_stack: Stack) -> None:
    basket = await open_group(ops_stack)
    price = Money(amount=1200, currency="EUR")
    line = OrderLine(
        product_id=uuid.UUID(basket.product_id),
        product_name="Panier",
        quantity=Decimal(1),
        unit_price=price,
        line_total=line_amount(Decimal(1), price, Decimal(0)),
    )
    event = OrderConfirmed(
        group_id=basket.group_id,
        order_id=uuid.uuid4(),
        member_id=basket.member_id,
        distribution_id=uuid.UUID(basket.distribution_id),
        payment_method=PaymentMethod.CHEQUE,
        lines=[line],
        total=price,
    )
    # The same order parked twice (say a redelivered copy), as the ledger's consumer parks.
    connection = await aio_pika.connect_robust(ops_stack.amqp_url)
    async with connection:
        channel = await connection.channel()
        for attempt in (1, 2):
            await channel.default_exchange.publish(
                aio_pika.Message(
                    event.model_dump_json().encode(),
                    message_id=str(event.event_id),
                    correlation_id=event.correlation_id,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    headers={
                        PARKING_REASON_HEADER: f"refused: the ledger was being restored (copy {attempt})",
                        "x-original-routing-key": "orders.order.confirmed",
                    },
                ),
                routing_key="ledger.postings.parking",
            )

    listed = await asyncio.to_thread(cagette_ops, ops_stack, "parked", "list")
    assert listed.returncode == 0, listed.stderr
    assert "ledger.postings.parking: 2 message(s)" in listed.stdout
    assert "1 x refused: the ledger was being restored (copy 1)" in listed.stdout
    shown = await asyncio.to_thread(
        cagette_ops, ops_stack, "parked", "show", "ledger.postings.parking", str(event.event_id)
    )
    assert json.loads(shown.stdout)["body"]["order_id"] == str(event.order_id)

    async with EventSpy(ops_stack.amqp_url, "ledger.transaction.posted") as spy:
        replayed = await asyncio.to_thread(
            cagette_ops, ops_stack, "parked", "replay", "ledger.postings.parking", "--reason", "being restored"
        )
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert json.loads(replayed.stdout)["message_ids"] == [str(event.event_id)] * 2
        await spy.wait_for("ledger.transaction.posted", group_id=str(basket.group_id))
        await asyncio.sleep(1.0)  # room for a wrongly posted second copy to show up
        assert len(spy.matching("ledger.transaction.posted", group_id=str(basket.group_id))) == 1

    async with client(ops_stack, "ledger") as ledger:
        balance = await ledger.get(
            f"/groups/{basket.group_id}/members/{basket.member_id}/balance",
            headers=bearer(basket.member_id, member_of=basket.group_id),
        )
    assert balance.json()["balance"] == {"amount": -1200, "currency": "EUR"}

    after = await asyncio.to_thread(cagette_ops, ops_stack, "parked", "list")
    assert "ledger.postings.parking: 0 message(s)" in after.stdout
    history = await asyncio.to_thread(cagette_ops, ops_stack, "history")
    [record] = [json.loads(line) for line in history.stdout.splitlines() if "replay" in line]
    assert record["operator"] == "camille" and record["queue"] == "ledger.postings.parking"


async def test_a_stopping_service_answers_not_ready_while_it_still_serves(servers: IsolatedServers) -> None:
    drain = {"CAGETTE_SHUTDOWN_DRAIN_SECONDS": "4"}
    async with running_stack(servers, "drain", services=("orders",), extra_env=drain) as running:
        orders = running.services["orders"]
        assert orders.process is not None
        async with client(running, "orders") as http:
            assert (await http.get("/ready")).status_code == 200
            orders.process.send_signal(signal.SIGTERM)

            async def not_ready() -> bool:
                return (await http.get("/ready")).status_code == 503

            await eventually(not_ready, timeout=3)
            assert (await http.get("/health")).status_code == 200  # still serving requests
            assert (await http.get("/ready")).json()["checks"]["shutdown"].startswith("draining")
        await asyncio.wait_for(orders.process.wait(), timeout=30)
