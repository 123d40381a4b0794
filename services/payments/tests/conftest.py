"""The payments service running against the real PostgreSQL and RabbitMQ of the test run.

One service for the whole session (its own database and the run's vhost); every test works in
groups of its own (fresh UUIDs), so tests do not see each other's data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import func, select, text

from cagette_contracts import (
    Event,
    GroupSettingsChanged,
    MemberJoined,
    Money,
    OrderAmended,
    OrderConfirmed,
    OrderLine,
    PaymentMethod,
    Role,
    SubscriptionConfirmed,
    line_amount,
)
from cagette_payments.app import build_service
from cagette_payments.settings import PaymentsSettings
from cagette_runtime.auth import Principal, encode_token
from cagette_runtime.service import Service
from cagette_runtime.tables import outbox_messages
from cagette_runtime.testing import KEYED, EventSpy, IsolatedServers, publish_event, wait_consumed

from .stripe_standin import Served, StripeStandIn

STRIPE_KEY = "sk_test_" + "standin0123456789abcdef"
WEBHOOK_SECRET = "whsec_" + "standin0123456789abcdefghijklmn"


def line(name: str, cents: int, quantity: str = "1", currency: str = "EUR") -> OrderLine:
    price = Money(amount=cents, currency=currency)
    qty = Decimal(quantity)
    return OrderLine(product_name=name, quantity=qty, unit_price=price, line_total=line_amount(qty, price))


def lines_total(lines: list[OrderLine]) -> Money:
    result = Money.zero(lines[0].line_total.currency)
    for item in lines:
        result = result + item.line_total
    return result


@dataclass
class Group:
    group_id: UUID
    coordinator: UUID
    members: list[UUID]
    currency: str = "EUR"


@dataclass
class Payments:
    service: Service
    client: httpx.AsyncClient
    amqp_url: str
    tokens: dict[tuple, str] = field(default_factory=dict)
    web: httpx.AsyncClient | None = None  # the service over real HTTP
    standin: StripeStandIn | None = None

    # -- auth --
    def token(self, user_id: UUID, roles: dict[UUID, Role] | None = None, admin: bool = False) -> dict[str, str]:
        key = (user_id, tuple(sorted((roles or {}).items())), admin)
        if key not in self.tokens:
            principal = Principal(user_id=user_id, roles=roles or {}, platform_admin=admin)
            self.tokens[key] = encode_token(
                principal, self.service.settings.jwt_secret, issuer=self.service.settings.jwt_issuer
            )
        return {"Authorization": f"Bearer {self.tokens[key]}"}

    def coordinator(self, group: Group) -> dict[str, str]:
        return self.token(group.coordinator, {group.group_id: Role.COORDINATOR})

    def member(self, group: Group, member_id: UUID) -> dict[str, str]:
        return self.token(member_id, {group.group_id: Role.MEMBER})

    def admin(self) -> dict[str, str]:
        return self.token(uuid4(), admin=True)

    # -- messages --
    async def publish(self, event: Event) -> None:
        await publish_event(self.service.broker, event)

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.service.database.transaction() as session:
            return (await session.execute(text(sql), params)).scalar()

    async def outbox_count(self) -> int:
        async with self.service.database.transaction() as session:
            return (await session.execute(select(func.count()).select_from(outbox_messages))).scalar_one()

    async def processed(self, event: Event) -> None:
        """Wait until the service consumed `event` (every event fed here is one of orders')."""
        await wait_consumed(self.service.database, "payments.orders", event, timeout=15.0)

    async def feed(self, *events: Event) -> None:
        for event in events:
            await self.publish(event)
        for event in events:
            await self.processed(event)

    # -- fixtures of a test --
    async def new_group(self, members: int = 2, *, currency: str = "EUR", payments_enabled: bool = True) -> Group:
        group = Group(uuid4(), uuid4(), [uuid4() for _ in range(members)], currency)
        await self.feed(
            GroupSettingsChanged(
                group_id=group.group_id,
                name="AMAP des Lilas",
                currency=currency,
                payments_enabled=payments_enabled,
                payment_methods=[
                    PaymentMethod.CHEQUE,
                    PaymentMethod.TRANSFER,
                    PaymentMethod.CASH,
                    PaymentMethod.ON_THE_SPOT,
                    PaymentMethod.MONEY_POT,
                ],
            ),
            MemberJoined(
                group_id=group.group_id,
                member_id=group.coordinator,
                role=Role.COORDINATOR,
                name="Coord",
                email="coord@example.org",
            ),
            *[
                MemberJoined(
                    group_id=group.group_id,
                    member_id=m,
                    role=Role.MEMBER,
                    name=f"Member {i}",
                    email=f"m{i}@example.org",
                )
                for i, m in enumerate(group.members)
            ],
        )
        return group

    async def order(
        self, group: Group, member_id: UUID, distribution_id: UUID | None, method: PaymentMethod, *lines: OrderLine
    ) -> OrderConfirmed:
        lines = lines or (line("Carrots", 350, "2"),)
        event = OrderConfirmed(
            group_id=group.group_id,
            order_id=uuid4(),
            member_id=member_id,
            distribution_id=distribution_id,
            payment_method=method,
            lines=list(lines),
            total=lines_total(list(lines)),
        )
        await self.feed(event)
        return event

    async def amend(self, group: Group, order: OrderConfirmed, *lines: OrderLine) -> OrderAmended:
        lines = lines or (line("Eggs", 300),)
        added = lines_total(list(lines))
        event = OrderAmended(
            group_id=group.group_id,
            order_id=order.order_id,
            amendment_id=uuid4(),
            member_id=order.member_id,
            distribution_id=order.distribution_id,
            payment_method=order.payment_method,
            added_lines=list(lines),
            added_total=added,
            new_total=order.total + added,
        )
        await self.feed(event)
        return event

    async def subscribe(
        self, group: Group, member_id: UUID, contract_id: UUID, per_distribution: list[OrderLine], distributions: int
    ) -> SubscriptionConfirmed:
        per = lines_total(per_distribution)
        event = SubscriptionConfirmed(
            group_id=group.group_id,
            subscription_id=uuid4(),
            contract_id=contract_id,
            contract_name="Vegetables 2026",
            member_id=member_id,
            payment_method=PaymentMethod.CHEQUE,
            lines=per_distribution,
            distribution_count=distributions,
            distribution_ids=[uuid4() for _ in range(distributions)],
            total=Money(amount=per.amount * distributions, currency=per.currency),
        )
        await self.feed(event)
        return event

    async def declared_cheque(self) -> tuple[Group, UUID, str]:
        """A new group whose first member ordered by cheque: the group, the member and the URL that
        confirms the declared payment."""
        group = await self.new_group()
        member = group.members[0]
        await self.order(group, member, uuid4(), PaymentMethod.CHEQUE)
        [declared] = await self.member_payments(group, member)
        return group, member, f"/groups/{group.group_id}/payments/{declared['payment_id']}/confirm"

    async def member_payments(self, group: Group, member_id: UUID) -> list[dict]:
        response = await self.client.get(
            f"/groups/{group.group_id}/members/{member_id}/payments", headers=self.coordinator(group)
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="session")
async def stripe_standin() -> AsyncIterator[tuple[StripeStandIn, Served]]:
    """The local stand-in for the Stripe API, on a free port (see stripe_standin.py)."""
    standin = StripeStandIn(api_key=STRIPE_KEY)
    served = Served(standin.app())
    await served.start()
    try:
        yield standin, served
    finally:
        await served.stop()


@pytest.fixture(scope="session")
async def payments(servers: IsolatedServers, stripe_standin: tuple[StripeStandIn, Served]) -> AsyncIterator[Payments]:
    database_url = await servers.create_database("payments")
    standin, standin_server = stripe_standin
    settings = PaymentsSettings(
        service_name="payments",
        database_url=database_url,
        amqp_url=servers.amqp_url,
        outbox_poll_interval=0.1,
        stripe_api_key=STRIPE_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=standin_server.url,
        stripe_max_network_retries=0,
        card_jobs_interval=0.2,
    )
    service = build_service(settings)
    app = service.create_app()
    await service.start()
    served = Served(app)  # the same app over real HTTP, for the provider's webhooks
    await served.start()
    try:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://payments", **KEYED) as client,
            httpx.AsyncClient(base_url=served.url, timeout=10, **KEYED) as web,
        ):
            yield Payments(service, client, servers.amqp_url, web=web, standin=standin)
    finally:
        await served.stop()
        await service.stop()


@pytest.fixture
async def spy(payments: Payments) -> AsyncIterator[EventSpy]:
    async with EventSpy(payments.amqp_url, "payments.#") as seen:
        yield seen
