"""The orders service's bootstrap."""

from pathlib import Path

from fastapi import FastAPI

from cagette_runtime.service import Service
from cagette_runtime.settings import ServiceSettings

from .api import OrdersMemberships, router
from .handlers import consumers
from .orders_api import router as orders_router

NAME = "orders"


def build_service(settings: ServiceSettings | None = None) -> Service:
    return Service(
        NAME,
        migrations=str(Path(__file__).parent / "migrations"),
        routers=[router, orders_router],
        consumers=consumers,
        settings=settings,
        memberships=lambda service: OrdersMemberships(service.database),
        description="Groups and payment settings, members, catalogs, distributions, orders "
        "and subscriptions: the front door of every money flow.",
    )


def create_app() -> FastAPI:
    return build_service().create_app()
