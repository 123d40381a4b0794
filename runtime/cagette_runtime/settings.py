"""Settings from environment variables (prefix CAGETTE_), defaulting to the local servers."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_POSTGRES_SERVER_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432"
DEV_JWT_SECRET = "dev-only-secret-change-me-in-production-0123456789"


def default_database_url(service: str) -> str:
    return f"{DEFAULT_POSTGRES_SERVER_URL}/cagette_{service}"


class ServiceSettings(BaseSettings):
    """What every service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="CAGETTE_", extra="ignore")

    service_name: str = "cagette"
    amqp_url: str = DEFAULT_AMQP_URL
    database_url: str = ""
    jwt_secret: str = Field(default=DEV_JWT_SECRET, min_length=32)
    jwt_issuer: str = "cagette"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"
    # FastStream logs every message at INFO; keep that at DEBUG unless asked.
    broker_log_level: str = "DEBUG"
    # Consumer behaviour.
    prefetch_count: int = 64
    delivery_limit: int = 5
    # Outbox relay.
    outbox_batch_size: int = 200
    outbox_poll_interval: float = 0.5
    outbox_max_backoff: float = 60.0
    # How long an event nobody is bound to is retried before it is parked in cagette.unrouted.
    outbox_unroutable_grace: float = 300.0
    # Retention of published outbox rows and of inbox rows (which must outlive any redelivery).
    outbox_retention_days: float = 7.0
    inbox_retention_days: float = 30.0
    migrate_on_start: bool = True
    # Request bodies: answered 413 past this many bytes (webhooks, signed by a provider: smaller).
    max_body_bytes: int = Field(default=512 * 1024, ge=1024)
    webhook_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Failed authentications (bad bearer tokens, failed sign-ins) per client address and window
    # before answering 429; counted in Redis across replicas when its URL is set.
    auth_failure_limit: int = Field(default=20, ge=1)
    auth_failure_window_seconds: int = Field(default=60, ge=1)
    rate_limit_redis_url: str | None = None

    def model_post_init(self, context: object) -> None:
        if not self.database_url:
            self.database_url = default_database_url(self.service_name)


def load_settings(service_name: str) -> ServiceSettings:
    return ServiceSettings(service_name=service_name)
