"""The orders service's bootstrap."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from cagette_runtime.service import Service
from cagette_runtime.settings import ServiceSettings, derive_settings

from .api import OrdersMemberships, router
from .handlers import consumers
from .holds import HoldReconciler, LedgerHolds
from .orders_api import router as orders_router
from .settings import OrdersSettings

NAME = "orders"


class OrdersService(Service):
    """The runtime's Service plus the ledger's money-pot holds (`holds`) and the loop that gives
    back every hold whose order was never recorded (`hold_reconciler`)."""

    settings: OrdersSettings

    def __init__(self, settings: ServiceSettings | None = None) -> None:
        super().__init__(
            NAME,
            migrations=str(Path(__file__).parent / "migrations"),
            routers=[router, orders_router],
            consumers=consumers,
            settings=derive_settings(OrdersSettings, settings),
            memberships=lambda service: OrdersMemberships(service.database),
            description="Groups and payment settings, members, catalogs, distributions, orders "
            "and subscriptions: the front door of every money flow.",
        )
        self.holds = LedgerHolds(
            self.broker,
            timeout=self.settings.orders_hold_request_timeout,
            lifetime=timedelta(seconds=self.settings.orders_hold_lifetime_seconds),
        )
        self.hold_reconciler = HoldReconciler(
            self.database,
            self.holds,
            self.settings.orders_hold_reconcile_seconds,
            grace=timedelta(seconds=self.settings.orders_hold_release_grace_seconds),
        )
        self.background.append(self.hold_reconciler)


def build_service(settings: ServiceSettings | None = None) -> OrdersService:
    return OrdersService(settings)


def create_app() -> FastAPI:
    return build_service().create_app()
