"""The ledger service's bootstrap."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from cagette_runtime.batching import BatchingConsumer
from cagette_runtime.consumer import Consumer
from cagette_runtime.service import Runner, Service
from cagette_runtime.settings import ServiceSettings, derive_settings

from . import holds
from .api import router
from .gauges import GAUGES
from .handlers import POSTINGS_QUEUE, consumers, dispatch_batch
from .settings import LedgerSettings
from .tables import memberships

NAME = "ledger"
MIGRATIONS = str(Path(__file__).parent / "migrations")


class LedgerService(Service):
    """The runtime's Service plus batched consumption (settings.ledger_batch_size, through the
    runner extension point), the hold request/reply endpoints and the hold-expiry sweep
    (settings.ledger_hold_sweep_seconds)."""

    settings: LedgerSettings

    def __init__(self, settings: ServiceSettings | None = None) -> None:
        self.batchers: list[BatchingConsumer] = []
        super().__init__(
            NAME,
            migrations=MIGRATIONS,
            routers=[router],
            consumers=consumers,
            settings=derive_settings(LedgerSettings, settings),
            gauges=GAUGES,
            membership_table=memberships,
            description="Double-entry member accounts, holds, balances and statements; the only authority on balances.",
        )
        holds.register(self)
        self.background.append(holds.HoldSweeper(self.database, self.settings.ledger_hold_sweep_seconds))

    def runner(self, consumer: Consumer) -> Runner:
        """ledger.postings in batches (one transaction per delivered batch) unless the batch size is 1."""
        if consumer.name != POSTINGS_QUEUE or self.settings.ledger_batch_size <= 1:
            return super().runner(consumer)
        batcher = BatchingConsumer(
            self.consumer_runner(consumer), batch_handler=dispatch_batch, max_batch=self.settings.ledger_batch_size
        )
        self.batchers.append(batcher)
        return batcher


def build_service(settings: ServiceSettings | None = None) -> LedgerService:
    return LedgerService(settings)


def create_app() -> FastAPI:
    return build_service().create_app()
