"""Orders test fixtures: one orders service on real PostgreSQL and RabbitMQ, in a vhost of its
own (so no real ledger of another suite answers its hold requests), driven over HTTP.

Tests isolate themselves with fresh groups. `FakeLedgerHolds` is the test double of the ledger's
hold responder: it answers `PlaceHold` requests on the real broker, on the contract queue, from
balances the test sets. The real responder is exercised by tests/test_money_pot_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest
from sqlalchemy import func, select, text

from cagette_contracts import CardSettingsChanged, Event, Money, Role, routing
from cagette_contracts.ledger import HoldDecision, PlaceHold, ReleaseHold
from cagette_contracts.routing import LEDGER_HOLD_RELEASES_QUEUE
from cagette_orders import handlers
from cagette_orders.app import build_service
from cagette_orders.holds import LedgerHolds
from cagette_runtime.auth import Principal, encode_token
from cagette_runtime.service import Service
from cagette_runtime.settings import ServiceSettings
from cagette_runtime.tables import outbox_messages
from cagette_runtime.testing import (
    KEYED,
    EventSpy,
    IsolatedServers,
    create_vhost,
    delete_vhost,
    publish_event,
    wait_consumed,
)


@dataclass
class OrdersEnv:
    amqp_url: str
    service: Service
    client: httpx.AsyncClient
    spy: EventSpy

    @property
    def settings(self) -> ServiceSettings:
        return self.service.settings


@pytest.fixture(scope="session")
async def orders_amqp(servers: IsolatedServers) -> AsyncIterator[str]:
    vhost = f"cagette-test-{servers.run_id}-orders"
    url = await create_vhost(servers.base_amqp_url, vhost)
    yield url
    await delete_vhost(servers.base_amqp_url, vhost)


@pytest.fixture(scope="session")
async def env(servers: IsolatedServers, orders_amqp: str) -> AsyncIterator[OrdersEnv]:
    settings = ServiceSettings(
        service_name="orders",
        database_url=await servers.create_database("orders"),
        amqp_url=orders_amqp,
        outbox_poll_interval=0.1,
        delivery_limit=3,
    )
    service = build_service(settings)
    app = service.create_app()
    async with app.router.lifespan_context(app):
        app.state.holds = LedgerHolds(service.broker, timeout=2.0)
        async with EventSpy(orders_amqp, "orders.#") as spy:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://orders", **KEYED
            ) as client:
                yield OrdersEnv(orders_amqp, service, client, spy)


def bearer(
    settings: ServiceSettings, user_id: uuid.UUID, roles: dict[uuid.UUID, Role] | None = None, admin: bool = False
) -> dict[str, str]:
    principal = Principal(user_id=user_id, roles=roles or {}, platform_admin=admin)
    return {"Authorization": f"Bearer {encode_token(principal, settings.jwt_secret, issuer=settings.jwt_issuer)}"}


def now() -> datetime:
    return datetime.now(UTC)


METHODS_CHEQUE = {
    "payment_methods": ["cheque", "cash", "transfer", "on_the_spot"],
    "cheque_payee": "Les paniers",
    "transfer_iban": "FR76 3000 6000 0112 3456 7890 189",
    "transfer_bic": "AGRIFRPP",
}


@dataclass
class Group:
    """A fresh group with a coordinator, a variable catalog (bread by the piece, cheese by the kg
    with a 2% fee) and an open distribution, plus helpers."""

    env: OrdersEnv
    group_id: uuid.UUID
    coordinator_id: uuid.UUID
    data: dict[str, Any]
    catalog: dict[str, Any] = field(default_factory=dict)
    distribution: dict[str, Any] = field(default_factory=dict)

    @property
    def client(self) -> httpx.AsyncClient:
        return self.env.client

    @property
    def coordinator(self) -> dict[str, str]:
        return bearer(self.env.settings, self.coordinator_id, {self.group_id: Role.COORDINATOR})

    def member(self, member_id: uuid.UUID, role: Role = Role.MEMBER) -> dict[str, str]:
        return bearer(self.env.settings, member_id, {self.group_id: role})

    @property
    def bread(self) -> str:
        return self.catalog["products"][0]["product_id"]

    @property
    def cheese(self) -> str:
        return self.catalog["products"][1]["product_id"]

    def url(self, path: str = "") -> str:
        return f"/groups/{self.group_id}{path}"

    async def join(self, role: Role = Role.MEMBER, **extra: Any) -> tuple[uuid.UUID, dict[str, str]]:
        member_id = uuid.uuid4()
        body = {
            "member_id": str(member_id),
            "role": role.value,
            "name": f"M {member_id.hex[:6]}",
            "email": f"{member_id.hex[:8]}@example.org",
            **extra,
        }
        response = await self.client.post(self.url("/members"), json=body, headers=self.coordinator)
        assert response.status_code == 201, response.text
        return member_id, self.member(member_id, role)

    async def new_catalog(self, name: str, kind: str, products: list[dict[str, Any]]) -> dict[str, Any]:
        """A catalog created by the coordinator (201), as the API answers it."""
        body = {"name": name, "kind": kind, "products": products}
        response = await self.client.post(self.url("/catalogs"), json=body, headers=self.coordinator)
        assert response.status_code == 201, response.text
        return response.json()

    async def new_distribution(
        self,
        catalog_ids: list[str] | None = None,
        *,
        starts_in: timedelta = timedelta(days=3),
        opened: timedelta = timedelta(hours=1),
        closes_before: timedelta = timedelta(hours=1),
    ) -> dict[str, Any]:
        starts = now() + starts_in
        body = {
            "starts_at": starts.isoformat(),
            "place": "La grange",
            "catalog_ids": catalog_ids or [self.catalog["catalog_id"]],
            "orders_open_at": (now() - opened).isoformat(),
            "orders_close_at": (starts - closes_before).isoformat(),
        }
        response = await self.client.post(self.url("/distributions"), json=body, headers=self.coordinator)
        assert response.status_code == 201, response.text
        return response.json()

    async def order(
        self,
        headers: dict[str, str],
        lines: list[tuple[str, str]],
        method: str | None = "cheque",
        distribution_id: str | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "distribution_id": distribution_id or self.distribution["distribution_id"],
            "lines": [{"product_id": p, "quantity": q} for p, q in lines],
        }
        if method is not None:
            body["payment_method"] = method
        return await self.client.post(self.url("/orders"), json=body, headers=headers)

    async def change_basket(self, path: str, headers: dict[str, str], lines: list[tuple[str, str]]) -> httpx.Response:
        """PUT the whole basket wanted (product id, quantity) to an order's or a subscription's path."""
        body = {"lines": [{"product_id": p, "quantity": q} for p, q in lines]}
        return await self.client.put(path, json=body, headers=headers)

    async def settings(self, **changes: Any) -> httpx.Response:
        return await self.client.patch(self.url(), json=changes, headers=self.coordinator)


async def make_group(env: OrdersEnv, **settings: Any) -> Group:
    coordinator_id = uuid.uuid4()
    admin = bearer(env.settings, uuid.uuid4(), admin=True)
    body = {
        "name": "Les paniers",
        "currency": "EUR",
        "language": "fr",
        "payments_enabled": True,
        **METHODS_CHEQUE,
        **settings,
    }
    response = await env.client.post("/groups", json=body, headers=admin)
    assert response.status_code == 201, response.text
    data = response.json()
    group = Group(env, uuid.UUID(data["group_id"]), coordinator_id, data)
    response = await env.client.post(
        group.url("/members"),
        headers=admin,
        json={"member_id": str(coordinator_id), "role": "coordinator", "name": "Coord", "email": "coord@example.org"},
    )
    assert response.status_code == 201, response.text
    group.catalog = await group.new_catalog(
        "Ferme",
        "variable",
        [
            {"name": "Bread", "unit_price": 350, "unit": "piece"},
            {"name": "Cheese", "unit_price": 1999, "unit": "kg", "fee_rate": "0.02"},
        ],
    )
    group.distribution = await group.new_distribution()
    return group


@pytest.fixture
async def group(env: OrdersEnv) -> Group:
    return await make_group(env)


# ------------------------------------------------------------------ looking at the database


async def outbox_rows(env: OrdersEnv, group_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every event this group's actions wrote to the outbox (published or not), oldest first."""
    async with env.service.database.sessionmaker() as session:
        rows = (
            await session.execute(
                select(outbox_messages.c.routing_key, outbox_messages.c.body)
                .where(text("(body::jsonb ->> 'group_id') = :g").bindparams(g=str(group_id)))
                .order_by(outbox_messages.c.id)
            )
        ).all()
    return [{"routing_key": r.routing_key, **json.loads(r.body)} for r in rows]


async def count(env: OrdersEnv, table: str, group_id: uuid.UUID) -> int:
    async with env.service.database.sessionmaker() as session:
        return int(await session.scalar(text(f"SELECT count(*) FROM {table} WHERE group_id = :g"), {"g": group_id}))


async def order_line_count(env: OrdersEnv, group_id: uuid.UUID) -> int:
    async with env.service.database.sessionmaker() as session:
        return int(
            await session.scalar(
                text("SELECT count(*) FROM order_lines JOIN orders USING (order_id) WHERE orders.group_id = :g"),
                {"g": group_id},
            )
        )


class Unchanged:
    """`async with Unchanged(env, group_id):` asserts the block changed no order and wrote no event."""

    def __init__(self, env: OrdersEnv, group_id: uuid.UUID) -> None:
        self.env, self.group_id = env, group_id

    async def snapshot(self) -> tuple[Any, ...]:
        async with self.env.service.database.sessionmaker() as session:
            outbox_total = await session.scalar(select(func.count()).select_from(outbox_messages))
            state = (
                await session.execute(
                    text("""
                SELECT
                  (SELECT string_agg(order_id::text || status || total_amount::text, ',' ORDER BY order_id)
                     FROM orders WHERE group_id = :g),
                  (SELECT count(*) FROM order_lines JOIN orders USING (order_id) WHERE orders.group_id = :g),
                  (SELECT count(*) FROM order_amendments JOIN orders USING (order_id) WHERE orders.group_id = :g),
                  (SELECT count(*) FROM order_line_removals JOIN orders USING (order_id) WHERE orders.group_id = :g),
                  (SELECT string_agg(subscription_id::text || total_amount::text, ',')
                     FROM subscriptions WHERE group_id = :g),
                  (SELECT count(*) FROM subscription_lines JOIN subscriptions USING (subscription_id)
                    WHERE group_id = :g),
                  (SELECT string_agg(g::text, ',') FROM groups g WHERE group_id = :g),
                  (SELECT string_agg(m::text, ',' ORDER BY member_id) FROM members m WHERE group_id = :g)
            """),
                    {"g": self.group_id},
                )
            ).one()
        return (outbox_total, *state)

    async def __aenter__(self) -> Unchanged:
        self.before = await self.snapshot()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            assert await self.snapshot() == self.before, "a refused request changed something or wrote an event"


# ------------------------------------------------------------------ the broker


async def publish(env: OrdersEnv, event: Event) -> None:
    await publish_event(env.service.broker, event)


async def deliver(env: OrdersEnv, event: Event, timeout: float = 10.0) -> None:
    """Publish an event on the real broker and wait until the orders consumer committed it."""
    await publish(env, event)
    await wait_consumed(env.service.database, handlers.QUEUE, event, timeout)


def card_settings(group: Group, ready: bool = True, **fields: Any) -> CardSettingsChanged:
    """What the payments service announces after a coordinator's PUT /groups/{g}/card-settings."""
    return CardSettingsChanged(
        group_id=group.group_id, card_payments_ready=ready, enabled=ready, provider_configured=True, **fields
    )


async def card_ready(group: Group, ready: bool = True, **fields: Any) -> CardSettingsChanged:
    """Deliver the payments service's card readiness for the group on the real broker, processed."""
    event = card_settings(group, ready, **fields)
    await deliver(group.env, event)
    return event


async def make_card_group(env: OrdersEnv, methods: list[str] | None = None, **settings: Any) -> Group:
    """A group whose card payments are ready (announced by payments), offering `methods` (card only by default)."""
    group = await make_group(env, **settings)
    await card_ready(group)
    response = await group.settings(payment_methods=methods or ["card"])
    assert response.status_code == 200, response.text
    assert response.json()["card_payments_configured"] is True
    group.data = response.json()
    return group


class FakeLedgerHolds:
    """Test double of the ledger's hold responder (the real one is in services/ledger): answers
    PlaceHold on `routing.LEDGER_HOLD_REQUESTS_QUEUE` with a HoldDecision, granting a hold when
    the member's balance minus earlier holds covers it; like the ledger, the same hold_id asked
    again while granted is the same grant (held once). `silent` makes it never answer."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.balances: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
        self.held: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
        self.requests: list[PlaceHold] = []
        self.releases: list[ReleaseHold] = []
        self.granted: dict[uuid.UUID, PlaceHold] = {}  # holds currently held, by hold id
        self.expirations: list[Any] = []  # each request's AMQP expiration, as received
        self.silent = False
        self.delay = 0.0  # seconds before answering
        self.reply_body: bytes | None = None  # answer this instead of a decision
        self.undecided = False  # answer as a ledger that could not decide (too late, not now)

    async def __aenter__(self) -> FakeLedgerHolds:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        self.channel = await self.connection.channel()
        self.queue = await self.channel.declare_queue(routing.LEDGER_HOLD_REQUESTS_QUEUE, auto_delete=True)
        await self.queue.consume(self._on_request)
        self.release_queue = await self.channel.declare_queue(LEDGER_HOLD_RELEASES_QUEUE, auto_delete=True)
        await self.release_queue.consume(self._on_release)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.queue.delete(if_unused=False, if_empty=False)
        await self.release_queue.delete(if_unused=False, if_empty=False)
        await self.connection.close()

    def available(self, group_id: uuid.UUID, member_id: uuid.UUID) -> int:
        key = (group_id, member_id)
        return self.balances.get(key, 0) - self.held.get(key, 0)

    async def _on_release(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            release = ReleaseHold.model_validate_json(message.body)
            self.releases.append(release)
            request = self.granted.pop(release.hold_id, None)
            if request is not None:
                key = (request.group_id, request.member_id)
                self.held[key] -= request.amount.amount

    async def _on_request(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            request = PlaceHold.model_validate_json(message.body)
            self.requests.append(request)
            self.expirations.append(message.expiration)
            if self.silent:
                return
            await asyncio.sleep(self.delay)
            if self.reply_body is not None:
                await self.channel.default_exchange.publish(
                    aio_pika.Message(self.reply_body, correlation_id=message.correlation_id),
                    routing_key=message.reply_to or "",
                )
                return
            key = (request.group_id, request.member_id)
            granted = not self.undecided and (
                request.hold_id in self.granted or self.available(*key) >= request.amount.amount
            )
            if granted and request.hold_id not in self.granted:
                self.held[key] = self.held.get(key, 0) + request.amount.amount
                self.granted[request.hold_id] = request
            decision = HoldDecision(
                hold_id=request.hold_id,
                granted=granted,
                available=Money(amount=self.available(*key), currency=request.amount.currency),
                reason=None if granted else "not decided now" if self.undecided else "insufficient balance",
                decided=not self.undecided,
            )
            await self.channel.default_exchange.publish(
                aio_pika.Message(
                    decision.model_dump_json().encode(),
                    correlation_id=message.correlation_id,
                    content_type="application/json",
                ),
                routing_key=message.reply_to or "",
            )


@pytest.fixture
async def ledger(env: OrdersEnv) -> AsyncIterator[FakeLedgerHolds]:
    async with FakeLedgerHolds(env.amqp_url) as fake:
        yield fake
