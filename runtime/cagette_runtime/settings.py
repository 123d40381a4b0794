"""Settings from environment variables (prefix CAGETTE_), defaulting to the local servers.

Secrets may also come from files, as Docker and Kubernetes provide them: point
CAGETTE_SECRETS_DIR at a directory holding one file per setting, named like the variable
(e.g. `cagette_database_url`). In production (CAGETTE_ENV=production) `unsafe_settings` lists
every development default still in place, and a service refuses to start while any is.
"""

from __future__ import annotations

import os
from typing import Literal, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from yarl import URL

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_POSTGRES_SERVER_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432"
# The shared HS256 secret of the first versions. Tokens signed with it (or any HS256 token) are
# refused everywhere; production refuses to start while it is still configured.
DEV_JWT_SECRET = "dev-only-secret-change-me-in-production-0123456789"
DEFAULT_WEB_PORT = 8005
DEFAULT_JWKS_URL = f"http://127.0.0.1:{DEFAULT_WEB_PORT}/.well-known/jwks.json"


def default_database_url(service: str) -> str:
    return f"{DEFAULT_POSTGRES_SERVER_URL}/cagette_{service}"


def secrets_dir() -> str | None:
    """Where secret files are read from (CAGETTE_SECRETS_DIR), if anywhere."""
    return os.environ.get("CAGETTE_SECRETS_DIR") or None


class UnsafeSettings(RuntimeError):
    """Production mode with development defaults: the message names each setting to provide."""


class ServiceSettings(BaseSettings):
    """What every service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="CAGETTE_", extra="ignore", secrets_dir=secrets_dir())

    service_name: str = "cagette"
    # `production` refuses development defaults (see unsafe_settings) and accepts only tokens
    # that its issuers signed with their published keys.
    env: Literal["development", "production"] = "development"
    amqp_url: str = DEFAULT_AMQP_URL
    database_url: str = ""
    # Connections the service keeps open to its database (and as many more under a burst).
    # PostgreSQL's max_connections must cover every replica of every service: with 4, the five
    # services at two replicas each open at most 5 x 2 x 8 = 80 of PostgreSQL's default 100.
    database_pool_size: int = Field(default=4, ge=1, le=200)
    # Legacy: the shared HS256 secret. Nothing signs or accepts HS256 tokens any more; the
    # setting stays readable so old scripts load, and production refuses the development value.
    jwt_secret: str | None = None
    # Access tokens: who issues them (web), for whom, where its public keys are.
    jwt_issuer: str = "cagette"
    jwt_audience: str = "cagette"
    jwt_jwks_url: str = DEFAULT_JWKS_URL
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    # A token naming a key not in the cached set refetches it, at most this often (so forged
    # kids cannot make a service hammer the issuer).
    jwks_refetch_cooldown_seconds: float = Field(default=30.0, ge=0)
    # A token living longer than this (exp - iat) is refused, whoever signed it.
    jwt_max_lifetime_seconds: int = Field(default=3600, gt=0, le=86400)
    jwt_leeway_seconds: int = Field(default=10, ge=0, le=300)
    # An external OpenID Connect provider whose tokens are accepted too (roles then come only
    # from the memberships this service knows). Its keys are found through its discovery
    # document unless oidc_jwks_url is given.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_user_id_claim: str = "sub"
    # For a (group, person) this service has not heard of from orders yet, trust the role in
    # the token? Default: yes in development (tests and scripts mint tokens for people orders
    # never announced), no in production (roles come only from the memberships it knows).
    trust_token_roles: bool | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"
    # FastStream logs every message at INFO; keep that at DEBUG unless asked.
    broker_log_level: str = "DEBUG"
    # Consumer behaviour: messages delivered ahead per consumer; how many times a message may fail
    # on its own account before it is parked; the delays of the retry queue (seconds, doubled on
    # each retry of the same message up to the max). An outage (RetryLater) is retried without
    # limit, a message's own failure up to the delivery limit.
    prefetch_count: int = 64
    # A batched consumer's largest transaction (messages); at most the prefetch is delivered.
    consumer_batch_size: int = Field(default=64, ge=1)
    delivery_limit: int = Field(default=5, ge=1)
    consumer_retry_delay: float = Field(default=1.0, gt=0)
    consumer_retry_max_delay: float = Field(default=15.0, gt=0)
    # Seconds between attempts to reconnect to the broker after losing it.
    broker_reconnect_interval: float = Field(default=1.0, gt=0)
    # Outbox relay.
    outbox_batch_size: int = 200
    outbox_poll_interval: float = 0.5
    outbox_max_backoff: float = 60.0
    # How long an event nobody is bound to is retried before it is parked in cagette.unrouted.
    outbox_unroutable_grace: float = 300.0
    # Retention of published outbox rows and of inbox rows (which must outlive any redelivery).
    outbox_retention_days: float = 7.0
    inbox_retention_days: float = 30.0
    # How long an Idempotency-Key's answer is kept and replayed (runtime/idempotency.py).
    idempotency_retention_hours: float = Field(default=24.0, gt=0)
    migrate_on_start: bool = True
    # How the consumer queues' policies (delivery limit, dead-letter route, overflow) are set:
    # auto | management | rabbitmqctl | off (see policies.py); the management API's address
    # (default http://<broker host>:15672).
    broker_policies: str = "auto"
    rabbitmq_management_url: str = ""
    # On SIGTERM, /ready answers 503 for this many seconds while requests are still served, so a
    # load balancer stops sending new ones before the service stops (rolling updates).
    shutdown_drain_seconds: float = 0.0
    # The event log stream (cagette.events.log): events older than the age (RabbitMQ units
    # Y, M, D, h, m, s) or past the size are dropped, a segment at a time.
    event_log_max_age: str = Field(default="30D", pattern=r"^[1-9][0-9]{0,5}(Y|M|D|h|m|s)$")
    event_log_max_bytes: int = Field(default=2_000_000_000, gt=0)
    event_log_segment_bytes: int = Field(default=100_000_000, gt=0)
    # Request bodies: answered 413 past this many bytes (webhooks, signed by a provider: smaller).
    max_body_bytes: int = Field(default=512 * 1024, ge=1024)
    webhook_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # File uploads (opening-balance CSV of up to 10,000 rows, bank statements): larger.
    upload_max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Failed authentications (bad bearer tokens, failed sign-ins) per client address and window
    # before answering 429; counted in Redis across replicas when its URL is set.
    auth_failure_limit: int = Field(default=20, ge=1)
    auth_failure_window_seconds: int = Field(default=60, ge=1)
    rate_limit_redis_url: str | None = None

    def model_post_init(self, context: object) -> None:
        if not self.database_url:
            self.database_url = default_database_url(self.service_name)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def trusts_token_roles(self) -> bool:
        return self.trust_token_roles if self.trust_token_roles is not None else not self.production

    def unsafe_settings(self) -> list[str]:
        """In production, each development default still in place, as a sentence naming the
        setting to provide. Empty in development."""
        if not self.production:
            return []
        problems = []
        if self.jwt_secret == DEV_JWT_SECRET:
            problems.append("CAGETTE_JWT_SECRET is the development secret: remove it (HS256 tokens are refused)")
        database = make_url(self.database_url)
        if not database.password:
            problems.append(
                "CAGETTE_DATABASE_URL has no password (trust authentication): give the database user a password"
            )
        broker = URL(self.amqp_url)
        if broker.user in (None, "", "guest"):
            problems.append("CAGETTE_AMQP_URL uses the guest broker user: give the service a broker user of its own")
        if not self.jwt_jwks_url and not self.oidc_issuer:
            problems.append("CAGETTE_JWT_JWKS_URL is empty: give the URL of the web service's JWKS")
        if self.oidc_issuer and not self.oidc_audience:
            problems.append("CAGETTE_OIDC_AUDIENCE is missing: say which audience the provider's tokens are for")
        return problems

    def refuse_unsafe(self) -> None:
        if problems := self.unsafe_settings():
            raise UnsafeSettings(
                f"{self.service_name} refuses to start in production mode:\n  - " + "\n  - ".join(problems)
            )


def load_settings(service_name: str) -> ServiceSettings:
    return ServiceSettings(service_name=service_name)


S = TypeVar("S", bound=ServiceSettings)


def derive_settings(cls: type[S], settings: ServiceSettings | None = None) -> S:
    """A service's own settings class (`cls`, a ServiceSettings with fields of its own) read from
    the environment, with what `settings` holds (explicitly or from its environment) on top: how
    every service turns the runtime's settings it was given, e.g. by a test, into its own."""
    if isinstance(settings, cls):
        return settings
    if settings is None:
        return cls()
    return cls(**settings.model_dump(exclude_unset=True))
