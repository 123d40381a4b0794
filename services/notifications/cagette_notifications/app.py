"""The notifications service's bootstrap: the runtime Service plus the email sender and the
negative-balance reminder scheduler (background loops: started after the broker, stopped before)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from faststream.rabbit import RabbitQueue
from faststream.rabbit.schemas.queue import QueueType

from cagette_contracts.routing import EMAIL_FAILED, EMAIL_SENT, EVENTS_EXCHANGE
from cagette_runtime.service import Service
from cagette_runtime.settings import ServiceSettings, derive_settings

from .api import router
from .gauges import GAUGES
from .handlers import consumers
from .sender import EmailSender, ReminderScheduler
from .settings import NotificationSettings
from .tables import memberships
from .webhooks import WebhookSender, sync_bindings
from .webhooks_api import router as webhooks_router

NAME = "notifications"

# Operators read EmailSent / EmailFailed from this queue (or bind their own). It keeps the newest
# reports only, so an unread queue cannot grow without bound; it also makes the events routable,
# which the outbox relay requires (it publishes mandatory).
REPORTS_QUEUE = "notifications.email-reports"
REPORTS_MAX_LENGTH = 10_000


class NotificationsService(Service):
    settings: NotificationSettings

    def __init__(self, settings: NotificationSettings) -> None:
        super().__init__(
            NAME,
            migrations=str(Path(__file__).parent / "migrations"),
            routers=[router, webhooks_router],
            consumers=lambda service: consumers(settings),
            settings=settings,
            gauges=GAUGES,
            membership_table=memberships,
            description="Emails members can act on: payment instructions, receipts, reminders.",
        )
        self.sender = EmailSender(self.database, settings)
        self.reminders = ReminderScheduler(self.database, settings)
        self.webhooks = WebhookSender(self.database, settings, self.broker)
        self.background += [self.sender, self.reminders, self.webhooks]

    async def start(self) -> None:
        await super().start()
        queue = await self.broker.declare_queue(
            RabbitQueue(
                REPORTS_QUEUE,
                queue_type=QueueType.QUORUM,
                durable=True,
                arguments={"x-max-length": REPORTS_MAX_LENGTH, "x-overflow": "drop-head"},
            )
        )
        for routing_key in (EMAIL_SENT, EMAIL_FAILED):
            await queue.bind(EVENTS_EXCHANGE, routing_key=routing_key)
        async with self.database.transaction() as session:
            await sync_bindings(session, self.broker)


def build_service(settings: ServiceSettings | None = None) -> NotificationsService:
    return NotificationsService(derive_settings(NotificationSettings, settings))


def create_app() -> FastAPI:
    return build_service().create_app()
