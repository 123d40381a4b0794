"""The ledger service's bootstrap."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from cagette_runtime.consumer import ConsumerRunner
from cagette_runtime.service import Service
from cagette_runtime.settings import ServiceSettings

from . import holds
from .api import router
from .batching import BatchingConsumer
from .gauges import GAUGES
from .handlers import consumers, dispatch_batch
from .settings import LedgerSettings, ledger_settings
from .tables import memberships

NAME = "ledger"
MIGRATIONS = str(Path(__file__).parent / "migrations")


class LedgerService(Service):
    """The runtime's Service plus batched consumption (settings.ledger_batch_size), the hold
    request/reply endpoints and the hold-expiry sweep (settings.ledger_hold_sweep_seconds)."""

    settings: LedgerSettings

    def __init__(self, settings: ServiceSettings | None = None) -> None:
        settings = ledger_settings(settings)
        batched = settings.ledger_batch_size > 1
        super().__init__(
            NAME,
            migrations=MIGRATIONS,
            routers=[router],
            # Batched: the Service declares the queues (self.consumers) but the batching consumer,
            # not the runtime's runner, subscribes to them.
            consumers=(lambda service: []) if batched else consumers,
            settings=settings,
            gauges=GAUGES,
            membership_table=memberships,
            description="Double-entry member accounts, holds, balances and statements; the only authority on balances.",
        )
        self.batchers: list[BatchingConsumer] = []
        if batched:
            batched_consumers = list(consumers(self))
            self.consumers += batched_consumers
            for consumer in batched_consumers:
                batcher = BatchingConsumer(
                    self.broker,
                    self.database,
                    ConsumerRunner(self.broker, self.database, consumer),
                    batch_handler=dispatch_batch,
                    max_batch=settings.ledger_batch_size,
                )
                batcher.subscribe()
                self.batchers.append(batcher)
        holds.register(self)
        self.background += [*self.batchers, holds.HoldSweeper(self.database, settings.ledger_hold_sweep_seconds)]


def build_service(settings: ServiceSettings | None = None) -> LedgerService:
    return LedgerService(settings)


def create_app() -> FastAPI:
    return build_service().create_app()
