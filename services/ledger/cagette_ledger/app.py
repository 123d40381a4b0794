"""The ledger service's bootstrap."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from cagette_runtime.consumer import ConsumerRunner
from cagette_runtime.service import Service
from cagette_runtime.settings import ServiceSettings

from . import holds
from .api import router
from .batching import BatchingConsumer
from .handlers import consumers, dispatch_batch

NAME = "ledger"
MIGRATIONS = str(Path(__file__).parent / "migrations")


class LedgerService(Service):
    """The runtime's Service plus batched consumption, the hold request/reply endpoints and the
    hold-expiry sweep.

    CAGETTE_LEDGER_BATCH_SIZE (default 200; 1 = the runtime's one-transaction-per-message
    runner) caps how many delivered messages commit in one database transaction (at most the
    channel prefetch, CAGETTE_PREFETCH_COUNT). CAGETTE_LEDGER_HOLD_SWEEP_SECONDS (default 30)
    is how often expired holds are marked expired."""

    def __init__(self, settings: ServiceSettings | None = None, *, hold_sweep_interval: float | None = None,
                 batch_size: int | None = None) -> None:
        batch = batch_size or int(os.environ.get("CAGETTE_LEDGER_BATCH_SIZE", "200"))
        super().__init__(
            NAME,
            migrations=MIGRATIONS,
            routers=[router],
            # Batched: the Service declares the queues (self.consumers) but the batching consumer,
            # not the runtime's runner, subscribes to them.
            consumers=consumers if batch <= 1 else (lambda service: []),
            settings=settings,
            description="Double-entry member accounts, holds, balances and statements; the only authority on balances.",
        )
        self.batchers: list[BatchingConsumer] = []
        if batch > 1:
            self.consumers = list(consumers(self))
            for consumer in self.consumers:
                batcher = BatchingConsumer(self.broker, self.database, ConsumerRunner(self.broker, self.database, consumer),
                                           batch_handler=dispatch_batch, max_batch=batch)
                batcher.subscribe()
                self.batchers.append(batcher)
        holds.register(self)
        interval = hold_sweep_interval or float(os.environ.get("CAGETTE_LEDGER_HOLD_SWEEP_SECONDS", "30"))
        self.sweeper = holds.HoldSweeper(self.database, interval)

    async def start(self) -> None:
        for batcher in self.batchers:
            batcher.start()
        await super().start()
        self.sweeper.start()

    async def stop(self) -> None:
        await self.sweeper.stop()
        for batcher in self.batchers:
            await batcher.stop()
        await super().stop()


def build_service(settings: ServiceSettings | None = None) -> LedgerService:
    return LedgerService(settings)


def create_app() -> FastAPI:
    return build_service().create_app()
