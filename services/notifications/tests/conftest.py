"""Fixtures for the notifications tests: a real SMTP server (aiosmtpd), the service on the real
PostgreSQL and RabbitMQ (an isolated database and vhost per test), and a publisher."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import aio_pika
import httpx
import pytest

from cagette_contracts import Event, Role
from cagette_contracts.routing import EVENTS_EXCHANGE
from cagette_notifications.app import NotificationsService, build_service
from cagette_notifications.handlers import QUEUE_NAME
from cagette_notifications.settings import NotificationSettings
from cagette_runtime.auth import Principal, encode_token
from cagette_runtime.testing import KEYED, IsolatedServers, Mailbox, create_vhost, delete_vhost, free_port, smtp_server


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
    channel: aio_pika.abc.AbstractChannel
    exchange: aio_pika.abc.AbstractExchange
    http: httpx.AsyncClient

    async def publish(self, *events: Event, message_id: str | None = None) -> None:
        for event in events:
            await self.exchange.publish(
                aio_pika.Message(
                    event.model_dump_json().encode(),
                    message_id=message_id or str(event.event_id),
                    correlation_id=event.correlation_id,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=event.routing_key(),
            )

    async def processed_all_before(self, sentinel: Event) -> None:
        """Publish `sentinel` and wait until it is processed: the one queue is consumed in order,
        so everything published before it was processed too."""
        await self.publish(sentinel)
        await self.wait_rows(
            # The notifications queue's own inbox row (member events are also consumed by the
            # memberships queue, in its own order).
            "SELECT 1 FROM inbox_messages WHERE event_id = :id AND consumer = :consumer",
            lambda rows: len(rows) == 1,
            id=sentinel.event_id,
            consumer=QUEUE_NAME,
        )

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
        connection = await aio_pika.connect_robust(amqp_url)
        try:
            channel = await connection.channel()
            exchange = await channel.get_exchange(EVENTS_EXCHANGE)
            app = service.create_app()  # its lifespan is not run: the service is already started
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://notifications", **KEYED
            ) as http:
                yield Running(service, amqp_url, channel, exchange, http)
        finally:
            await connection.close()
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

    def member(self, name: str, language: str = "fr", role: Role = Role.MEMBER):
        from cagette_contracts import MemberJoined

        member_id = uuid.uuid4()
        return MemberJoined(
            group_id=self.group_id,
            member_id=member_id,
            role=role,
            name=name,
            email=f"{name.lower()}.{member_id.hex[:6]}@example.org",
            language=language,
        )

    @staticmethod
    def lines():
        from decimal import Decimal

        from cagette_contracts import Money, OrderLine, line_amount

        eggs, bread = Money.of(320, "EUR"), Money.of(410, "EUR")
        return [
            OrderLine(
                product_name="Oeufs x6",
                quantity=Decimal("2"),
                unit_price=eggs,
                line_total=line_amount(Decimal("2"), eggs),
            ),
            OrderLine(
                product_name="Pain",
                quantity=Decimal("1.5"),
                unit_price=bread,
                line_total=line_amount(Decimal("1.5"), bread),
            ),
        ]  # 6,40 + 6,15 = 12,55 EUR

    def order(self, member, method: str):
        from cagette_contracts import Money, OrderConfirmed

        return OrderConfirmed(
            group_id=self.group_id,
            order_id=uuid.uuid4(),
            member_id=member.member_id,
            payment_method=method,
            lines=self.lines(),
            total=Money.of(1255, "EUR"),
        )

    def declared(self, order, reference: str | None, *, amendment=None):
        from cagette_contracts import PaymentDeclared

        amount = amendment.added_total if amendment is not None else order.total
        return PaymentDeclared(
            group_id=self.group_id,
            payment_id=uuid.uuid4(),
            member_id=order.member_id,
            amount=amount,
            order_id=order.order_id,
            amendment_id=amendment.amendment_id if amendment is not None else None,
            method=(amendment or order).payment_method,
            reference=reference,
        )


@pytest.fixture
def facts() -> Facts:
    return Facts()
