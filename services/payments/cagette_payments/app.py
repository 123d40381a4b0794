"""The payments service's bootstrap."""

from pathlib import Path

from fastapi import FastAPI

from cagette_runtime.service import Service
from cagette_runtime.settings import ServiceSettings, derive_settings

from . import card_usecases
from .api import router
from .bank_api import router as bank_router
from .card_api import router as card_router
from .gauges import GAUGES
from .handlers import consumers
from .jobs import FeeJobs
from .provider import CardProvider
from .settings import PaymentsSettings
from .tables import memberships
from .webhooks import router as webhook_router

NAME = "payments"


class PaymentsService(Service):
    """The runtime's Service plus the card provider client and its background fee job."""

    settings: PaymentsSettings

    def __init__(self, settings: PaymentsSettings) -> None:
        super().__init__(
            NAME,
            migrations=str(Path(__file__).parent / "migrations"),
            routers=[router, card_router, webhook_router, bank_router],
            consumers=consumers,
            settings=settings,
            gauges=GAUGES,
            membership_table=memberships,
            description="Payment references, manual and card payments, distribution validation.",
        )
        self.card_provider = CardProvider(settings)
        self.fee_jobs = FeeJobs(self.database, self.card_provider, settings.card_jobs_interval)
        if self.card_provider.configured:
            self.background.append(self.fee_jobs)

    async def start(self) -> None:
        await super().start()
        # The platform's keys may have been added or removed since the last run: tell orders
        # about every group whose card readiness changed that way.
        async with self.database.transaction() as session:
            await card_usecases.reannounce_readiness(
                session, self.card_provider.ready, settings_url=self.card_provider.settings.card_settings_url
            )

    def create_app(self) -> FastAPI:
        app = super().create_app()
        app.state.card_provider = self.card_provider
        return app


def build_service(settings: ServiceSettings | None = None) -> PaymentsService:
    return PaymentsService(derive_settings(PaymentsSettings, settings))


def create_app() -> FastAPI:
    return build_service().create_app()
