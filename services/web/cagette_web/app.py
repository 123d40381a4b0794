"""The web service's bootstrap."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from cagette_runtime.service import Service
from cagette_runtime.settings import ServiceSettings, derive_settings

from .api import router
from .handlers import consumers
from .keys import KeyRing
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
            routers=[router],
            consumers=lambda service: consumers(settings),
            settings=settings,
            description="People's accounts, sign-in and sessions; short-lived access tokens and their public keys "
            "(/.well-known/jwks.json); machine clients.",
        )
        self.keys = KeyRing(settings.web_signing_keys_dir, create_if_empty=not settings.production)


def build_service(settings: ServiceSettings | None = None) -> WebService:
    return WebService(settings)


def create_app() -> FastAPI:
    return build_service().create_app()
