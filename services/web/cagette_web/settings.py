"""The web service's settings: the runtime's, plus keys, lifetimes, cookies and limits (prefix CAGETTE_)."""

from __future__ import annotations

from pydantic import Field

from cagette_contracts.common import DEFAULT_TIME_ZONE
from cagette_runtime.settings import DEFAULT_WEB_PORT, ServiceSettings


class WebSettings(ServiceSettings):
    service_name: str = "web"
    http_port: int = DEFAULT_WEB_PORT
    # Where people reach this service: the links in invitation and reset emails start with it.
    web_public_url: str = f"http://127.0.0.1:{DEFAULT_WEB_PORT}"
    # Private signing keys, one PEM file each (Ed25519 or RSA); the file name (without .pem) is
    # the key id. The last name in sort order signs; all are published in the JWKS, so a new key
    # can be added ahead of its use and an old one kept until the tokens it signed expired.
    # In development an empty directory gets a key; production refuses to start without one.
    web_signing_keys_dir: str = "var/web-keys"
    access_token_minutes: int = Field(default=5, ge=1, le=60)
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    # Cookies are Secure (HTTPS only) unless this is turned off for plain-http local development.
    web_cookie_secure: bool = True
    invitation_days: float = Field(default=7.0, gt=0, le=30)
    reset_link_minutes: float = Field(default=60.0, gt=0, le=24 * 60)
    # Sign-in attempts: failures allowed per account and per client address within the window.
    sign_in_window_minutes: float = Field(default=15.0, gt=0)
    sign_in_failures_per_account: int = Field(default=5, ge=1)
    sign_in_failures_per_address: int = Field(default=20, ge=1)
    # Machine clients' tokens live this long (the services cap every lifetime anyway).
    client_token_minutes: int = Field(default=15, ge=1, le=60)
    # Where the other services answer: the pages call them with the signed-in person's
    # short-lived token (never with a token of their own).
    web_orders_url: str = "http://127.0.0.1:8001"
    web_ledger_url: str = "http://127.0.0.1:8002"
    web_payments_url: str = "http://127.0.0.1:8003"
    web_notifications_url: str = "http://127.0.0.1:8004"
    # How long a page waits for another service before telling the person it is unavailable.
    web_service_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Dates on pages outside a group, and in a group that has no time zone of its own yet (each
    # group's pages use the time zone of its settings in orders).
    web_time_zone: str = DEFAULT_TIME_ZONE

    def unsafe_settings(self) -> list[str]:
        problems = super().unsafe_settings()
        if self.production:
            from .keys import load_signing_keys

            if not load_signing_keys(self.web_signing_keys_dir):
                problems.append(
                    "CAGETTE_WEB_SIGNING_KEYS_DIR has no signing key: put a private key there "
                    "(python -m cagette_web new-signing-key DIR)"
                )
            if not self.web_cookie_secure:
                problems.append("CAGETTE_WEB_COOKIE_SECURE is off: cookies must be Secure in production")
            if not self.web_public_url.startswith("https://"):
                problems.append("CAGETTE_WEB_PUBLIC_URL must be an https:// address in production")
        return problems
