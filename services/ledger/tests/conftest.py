"""Ledger test fixtures: one migrated database and one running ledger service (real PostgreSQL
and RabbitMQ, isolated per run by the root `servers` fixture). Tests isolate themselves by
using fresh group ids."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import text

from cagette_contracts import (
    Event,
    GroupSettingsChanged,
    Money,
    OrderConfirmed,
    OrderLine,
    PaymentMethod,
    Role,
)
from cagette_ledger import handlers
from cagette_ledger.app import MIGRATIONS, LedgerService
from cagette_ledger.settings import LedgerSettings
from cagette_runtime.auth import Principal, encode_token
from cagette_runtime.db import Database
from cagette_runtime.migrations import upgrade_async
from cagette_runtime.settings import ServiceSettings
from cagette_runtime.testing import KEYED, IsolatedServers, publish_event, wait_consumed

PaymentT = TypeVar("PaymentT", bound=Event)


def payment_event(
    kind: type[PaymentT],
    group_id: uuid.UUID,
    member_id: uuid.UUID,
    amount: Money,
    method: PaymentMethod,
    payment_id: uuid.UUID | None = None,
    **extra: Any,
) -> PaymentT:
    """A payments event (declared, received, cancelled, refunded, reversed) about one payment of
    `amount` by `member_id`; a new payment unless `payment_id` names one."""
    fields: dict[str, Any] = {
        "group_id": group_id,
        "payment_id": payment_id or uuid.uuid4(),
        "member_id": member_id,
        "amount": amount,
        "method": method,
    }
    return kind(**fields, **extra)


def order_event(
    group_id: uuid.UUID,
    member_id: uuid.UUID,
    total: Money,
    *,
    method: PaymentMethod = PaymentMethod.CHEQUE,
    order_id: uuid.UUID | None = None,
    product: str = "basket",
    **extra: Any,
) -> OrderConfirmed:
    """An order of one `product` at `total` (a new order unless `order_id` names one)."""
    line = OrderLine(product_name=product, quantity=Decimal(1), unit_price=total, line_total=total)
    return OrderConfirmed(
        group_id=group_id,
        order_id=order_id or uuid.uuid4(),
        member_id=member_id,
        payment_method=method,
        lines=[line],
        total=total,
        **extra,
    )


@pytest.fixture(scope="session")
async def ledger_url(servers: IsolatedServers) -> str:
    url = await servers.create_database("ledger")
    await upgrade_async(url, MIGRATIONS)
    return url


@pytest.fixture(scope="session")
async def db(ledger_url: str) -> AsyncIterator[Database]:
    database = Database(ledger_url, pool_size=20)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def settings(ledger_url: str, servers: IsolatedServers) -> LedgerSettings:
    return LedgerSettings(
        database_url=ledger_url,
        amqp_url=servers.amqp_url,
        migrate_on_start=False,
        outbox_poll_interval=0.1,
        delivery_limit=3,
        ledger_hold_sweep_seconds=0.2,
    )


@pytest.fixture(scope="session")
async def service(settings: ServiceSettings) -> AsyncIterator[LedgerService]:
    ledger = LedgerService(settings)
    await ledger.start()
    yield ledger
    await ledger.stop()


@pytest.fixture(scope="session")
async def client(service: LedgerService) -> AsyncIterator[httpx.AsyncClient]:
    app = service.create_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ledger", **KEYED) as http:
        yield http


def token(
    settings: ServiceSettings, user_id: uuid.UUID, roles: dict[uuid.UUID, Role] | None = None, admin: bool = False
) -> dict[str, str]:
    principal = Principal(user_id=user_id, roles=roles or {}, platform_admin=admin)
    return {"Authorization": f"Bearer {encode_token(principal, settings.jwt_secret, issuer=settings.jwt_issuer)}"}


@dataclass
class World:
    """A fresh group with a coordinator, helpers to deliver events and to call the API."""

    group_id: uuid.UUID
    coordinator_id: uuid.UUID
    currency: str
    service: LedgerService
    client: httpx.AsyncClient
    settings: ServiceSettings

    @property
    def coordinator(self) -> dict[str, str]:
        return token(self.settings, self.coordinator_id, {self.group_id: Role.COORDINATOR})

    def member(self, member_id: uuid.UUID) -> dict[str, str]:
        return token(self.settings, member_id, {self.group_id: Role.MEMBER})

    @property
    def admin(self) -> dict[str, str]:
        return token(self.settings, uuid.uuid4(), admin=True)

    def money(self, amount: int) -> Money:
        return Money(amount=amount, currency=self.currency)

    def payment(
        self,
        kind: type[PaymentT],
        member_id: uuid.UUID,
        cents: int,
        method: PaymentMethod,
        payment_id: uuid.UUID | None = None,
        **extra: Any,
    ) -> PaymentT:
        """`payment_event` in this group, of `cents` in its currency."""
        return payment_event(kind, self.group_id, member_id, self.money(cents), method, payment_id, **extra)

    async def publish(self, event: Event) -> None:
        await publish_event(self.service.broker, event)

    async def deliver(self, event: Event, timeout: float = 10.0) -> None:
        """Publish and wait until the ledger's consumer has committed it."""
        await self.publish(event)
        await wait_processed(self.service.database, event, timeout)

    async def settings_changed(self, allow_negative: bool = True, **extra: Any) -> GroupSettingsChanged:
        event = GroupSettingsChanged(
            group_id=self.group_id,
            name="Les paniers",
            currency=self.currency,
            payments_enabled=True,
            payment_methods=list(PaymentMethod),
            allow_negative_money_pot=allow_negative,
            **extra,
        )
        await self.deliver(event)
        return event

    def order(
        self,
        member_id: uuid.UUID,
        cents: int,
        order_id: uuid.UUID | None = None,
        method: PaymentMethod = PaymentMethod.CHEQUE,
    ) -> OrderConfirmed:
        return order_event(self.group_id, member_id, self.money(cents), method=method, order_id=order_id)

    async def balance(self, member_id: uuid.UUID) -> dict[str, Any]:
        response = await self.client.get(
            f"/groups/{self.group_id}/members/{member_id}/balance", headers=self.coordinator
        )
        assert response.status_code == 200, response.text
        return response.json()


async def wait_processed(database: Database, event: Event, timeout: float = 10.0) -> None:
    await wait_consumed(database, handlers.POSTINGS_QUEUE, event, timeout)


@pytest.fixture
async def world(service: LedgerService, client: httpx.AsyncClient, settings: ServiceSettings) -> World:
    w = World(uuid.uuid4(), uuid.uuid4(), "EUR", service, client, settings)
    await w.settings_changed()
    return w


@pytest.fixture
def new_id() -> Callable[[], uuid.UUID]:
    return uuid.uuid4


async def count_rows(database: Database, table: str, group_id: uuid.UUID) -> int:
    async with database.sessionmaker() as session:
        return int(await session.scalar(text(f"SELECT count(*) FROM {table} WHERE group_id = :g"), {"g": group_id}))


def now() -> datetime:
    return datetime.now(UTC)
