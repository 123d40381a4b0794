"""The ledger service's bootstrap."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from cagette_runtime.service import Service
from cagette_runtime.settings import ServiceSettings

from . import holds
from .api import router
from .handlers import consumers

NAME = "ledger"
MIGRATIONS = str(Path(__file__).parent / "migrations")


class LedgerService(Service):
    """The runtime's Service plus the hold request/reply endpoints and the hold-expiry sweep."""

    def __init__(self, settings: ServiceSettings | None = None, *, hold_sweep_interval: float | None = None) -> None:
        super().__init__(
            NAME,
            migrations=MIGRATIONS,
            routers=[router],
            consumers=consumers,
            settings=settings,
            description="Double-entry member accounts, holds, balances and statements; the only authority on balances.",
        )
        holds.register(self)
        interval = hold_sweep_interval or float(os.environ.get("CAGETTE_LEDGER_HOLD_SWEEP_SECONDS", "30"))
        self.sweeper = holds.HoldSweeper(self.database, interval)

    async def start(self) -> None:
        await super().start()
        self.sweeper.start()

    async def stop(self) -> None:
        await self.sweeper.stop()
        await super().stop()


def build_service(settings: ServiceSettings | None = None) -> LedgerService:
    return LedgerService(settings)


def create_app() -> FastAPI:
    return build_service().create_app()
