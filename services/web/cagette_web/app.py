"""The web service's bootstrap."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from cagette_runtime.service import Service
from cagette_runtime.settings import ServiceSettings, derive_settings

from .adapters import ServiceApis
from .api import router
from .handlers import consumers
from .keys import KeyRing
from .pages import routers as page_routers
from .pages.common import STATIC_DIR, install_page_errors
from .settings import WebSettings

NAME = "web"
MIGRATIONS = str(Path(__file__).parent / "migrations")


class WebService(Service):
    settings: WebSettings

    def __init__(self, settings: ServiceSettings | None = None) -> None:
        settings = derive_settings(WebSettings, settings)
        super().__init__(
            NAME,
            migrations=MIGRATIONS,
            routers=[router, *page_routers],
            consumers=lambda service: consumers(settings),
            settings=settings,
            description="People's accounts, sign-in and sessions; short-lived access tokens and their public keys "
            "(/.well-known/jwks.json); machine clients.",
        )
        self.keys = KeyRing(settings.web_signing_keys_dir, create_if_empty=not settings.production)
        # Connection pools to the other services, for the pages (opened at start).
        self.apis = ServiceApis()

    async def start(self) -> None:
        await super().start()
        self.apis = ServiceApis.from_settings(self.settings)

    async def stop(self) -> None:
        await self.apis.close()
        await super().stop()

    def create_app(self) -> FastAPI:
        app = super().create_app()
        # The pages' own CSS and scripts (htmx): served from here, never from a CDN.
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
        install_page_errors(app)
        return app


def build_service(settings: ServiceSettings | None = None) -> WebService:
    return WebService(settings)


def create_app() -> FastAPI:
    return build_service().create_app()
