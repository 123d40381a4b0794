"""Fixtures for the notifications tests: a real SMTP server (aiosmtpd), the service on the real
PostgreSQL and RabbitMQ (an isolated database and vhost per test), and a publisher."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest

from cagette_contracts import (
    CardPaymentFailed,
    Event,
    MemberJoined,
    MemberUpdated,
    Money,
    OrderConfirmed,
    OrderLine,
    PaymentCancelled,
    PaymentDeclared,
    PaymentReceived,
    PaymentRefunded,
    Role,
    SubscriptionConfirmed,
    line_amount,
)
from cagette_notifications.app import NotificationsService, build_service
from cagette_notifications.handlers import QUEUE_NAME
from cagette_notifications.settings import NotificationSettings
from cagette_runtime.auth import Principal, encode_token
from cagette_runtime.testing import (
    KEYED,
    IsolatedServers,
    Mailbox,
    create_vhost,
    delete_vhost,
    free_port,
    publish_event,
    smtp_server,
    wait_consumed,
)

PaymentT = TypeVar("PaymentT", PaymentDeclared, PaymentReceived, PaymentCancelled, PaymentRefunded, CardPaymentFailed)


@pytest.fixture(name="free_port", scope="session")
def free_port_fixture() -> Callable[[], int]:
    return free_port


@pytest.fixture(name="smtp_server", scope="session")
def smtp_server_fixture() -> Callable[..., object]:
    """`async with smtp_server(port=None, refuse=None) as (mailbox, port):` a real SMTP server."""
    return smtp_server


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    async with smtp_server() as (box, port):
        box.port = port  # type: ignore[attr-defined]  # the test attaches its port to the mailbox
        yield box


@dataclass
class Running:
    service: NotificationsService
    amqp_url: str
    http: httpx.AsyncClient

    async def publish(self, *events: Event) -> None:
        for event in events:
            await publish_event(self.service.broker, event)

    async def processed_all_before(self, sentinel: Event) -> None:
        """Publish `sentinel` and wait until it is processed: the one queue is consumed in order,
        so everything published before it was processed too. (The notifications queue's own
        inbox row: member events are also consumed by the memberships queue, in its own order.)"""
        await self.publish(sentinel)
        await wait_consumed(self.service.database, QUEUE_NAME, sentinel, timeout=15.0)

    def token(self, user_id: uuid.UUID, roles: dict[uuid.UUID, Role], admin: bool = False) -> dict[str, str]:
        settings = self.service.settings
        principal = Principal(user_id=user_id, roles=roles, platform_admin=admin)
        token = encode_token(principal, settings.jwt_secret, issuer=settings.jwt_issuer)
        return {"Authorization": f"Bearer {token}"}

    async def rows(self, sql: str, **params: object) -> list:
        from sqlalchemy import text

        async with self.service.database.transaction() as session:
            return list((await session.execute(text(sql), params)).all())

    async def wait_rows(
        self, sql: str, predicate: Callable[[list], bool], timeout: float = 15.0, **params: object
    ) -> list:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            rows = await self.rows(sql, **params)
            if predicate(rows):
                return rows
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"condition not met within {timeout}s on {sql!r}: {rows}")
            await asyncio.sleep(0.05)


@pytest.fixture
def start_service(servers: IsolatedServers) -> Callable[..., object]:
    """`async with start_service(smtp_port=..., **settings) as running:` the service, started on
    a fresh database and vhost of its own."""

    @asynccontextmanager
    async def start(**overrides: object) -> AsyncIterator[Running]:
        name = f"notif_{uuid.uuid4().hex[:8]}"
        database_url = await servers.create_database(name)
        vhost = f"cagette-test-{servers.run_id}-{name}"
        amqp_url = await create_vhost(servers.base_amqp_url, vhost)
        fast: dict[str, object] = {
            "smtp_poll_interval": 0.2,
            "smtp_retry_base": 0.2,
            "smtp_retry_max": 0.5,
            "outbox_poll_interval": 0.2,
            "reminder_grace": timedelta(0),
            "reminder_check_interval": 0.2,
            # One message at a time, so a sentinel event proves everything before it was handled.
            "prefetch_count": 1,
        }
        settings = NotificationSettings(database_url=database_url, amqp_url=amqp_url, **{**fast, **overrides})
        service = build_service(settings)
        await service.start()
        try:
            app = service.create_app()  # its lifespan is not run: the service is already started
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://notifications", **KEYED
            ) as http:
                yield Running(service, amqp_url, http)
        finally:
            await service.stop()
            await delete_vhost(servers.base_amqp_url, vhost)

    return start


class Facts:
    """Builds the events other services publish, for one group."""

    IBAN = "FR76 3000 6000 0112 3456 7890 189"
    BIC = "AGRIFRPP"
    PAYEE = "AMAP des Lilas"

    def __init__(self) -> None:
        from cagette_contracts import GroupSettingsChanged, Language, PaymentMethod

        self.group_id = uuid.uuid4()
        self.group = GroupSettingsChanged(
            group_id=self.group_id,
            name="AMAP des Lilas",
            currency="EUR",
            language=Language.FR,
            payments_enabled=True,
            payment_methods=list(PaymentMethod),
            cheque_payee=self.PAYEE,
            transfer_iban=self.IBAN,
            transfer_bic=self.BIC,
        )

    def member(self, name: str, language: str = "fr", role: Role = Role.MEMBER) -> MemberJoined:
        member_id = uuid.uuid4()
        return MemberJoined(
            group_id=self.group_id,
            member_id=member_id,
            role=role,
            name=name,
            email=f"{name.lower()}.{member_id.hex[:6]}@example.org",
            language=language,
        )

    def coordinators(self) -> tuple[MemberJoined, MemberJoined]:
        """Cora, who reads French, and Carl, who reads English: the group's coordinators."""
        return self.member("Cora", "fr", role=Role.COORDINATOR), self.member("Carl", "en", role=Role.COORDINATOR)

    def updated(self, member: MemberJoined | MemberUpdated, **changes: object) -> MemberUpdated:
        """The member's next MemberUpdated: the member as known, but for `changes`."""
        known = {name: getattr(member, name) for name in ("member_id", "role", "name", "email", "language")}
        return MemberUpdated(group_id=self.group_id, **{**known, **changes})

    def payment(self, event_class: type[PaymentT], member: Any, amount: Money, **fields: object) -> PaymentT:
        """A payments event about one of the member's payments (a new one unless `payment_id`);
        `member`: anything with a member_id (the member, their order)."""
        fields.setdefault("payment_id", uuid.uuid4())
        return event_class(group_id=self.group_id, member_id=member.member_id, amount=amount, **fields)

    def outcome(self, event_class: type[PaymentT], declared: PaymentDeclared, **fields: object) -> PaymentT:
        """What became of a declared payment (received, cancelled): the same payment, member,
        amount, order and method."""
        same = {"payment_id": declared.payment_id, "order_id": declared.order_id, "method": declared.method}
        return self.payment(event_class, declared, declared.amount, **same, **fields)

    @staticmethod
    def line(product_name: str, unit_price: int, quantity: str = "1") -> OrderLine:
        price, how_many = Money.of(unit_price, "EUR"), Decimal(quantity)
        return OrderLine(
            product_name=product_name, quantity=how_many, unit_price=price, line_total=line_amount(how_many, price)
        )

    @classmethod
    def lines(cls) -> list[OrderLine]:
        return [cls.line("Oeufs x6", 320, "2"), cls.line("Pain", 410, "1.5")]  # 6,40 + 6,15 = 12,55 EUR

    def order(self, member, method: str) -> OrderConfirmed:
        return OrderConfirmed(
            group_id=self.group_id,
            order_id=uuid.uuid4(),
            member_id=member.member_id,
            payment_method=method,
            lines=self.lines(),
            total=Money.of(1255, "EUR"),
        )

    def subscription(
        self, member: MemberJoined, contract_name: str, method: str, distribution_count: int, total: Money
    ) -> SubscriptionConfirmed:
        return SubscriptionConfirmed(
            group_id=self.group_id,
            subscription_id=uuid.uuid4(),
            contract_id=uuid.uuid4(),
            contract_name=contract_name,
            member_id=member.member_id,
            payment_method=method,
            lines=self.lines(),
            distribution_count=distribution_count,
            total=total,
        )

    def declared(self, order, reference: str | None, *, amendment=None) -> PaymentDeclared:
        return self.payment(
            PaymentDeclared,
            order,
            amendment.added_total if amendment is not None else order.total,
            order_id=order.order_id,
            amendment_id=amendment.amendment_id if amendment is not None else None,
            method=(amendment or order).payment_method,
            reference=reference,
        )


@pytest.fixture
def facts() -> Facts:
    return Facts()
