"""The notifications service's settings: the runtime's, plus SMTP and reminders (prefix CAGETTE_)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from cagette_runtime.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    service_name: str = "notifications"
    # SMTP server (default: docker compose's mailpit, or `python -m aiosmtpd -n -l 127.0.0.1:1025`).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False  # upgrade the connection with STARTTLS
    smtp_tls: bool = False  # implicit TLS from the start (port 465)
    smtp_validate_certs: bool = True
    smtp_timeout: float = Field(default=30.0, gt=0)
    smtp_sender: str = "Cagette <no-reply@cagette.localhost>"
    # Sender task: how often it looks for due emails, how many per pass, retries.
    smtp_poll_interval: float = Field(default=1.0, gt=0)
    smtp_batch_size: int = Field(default=50, gt=0)
    smtp_concurrency: int = Field(default=4, gt=0, description="SMTP connections at once")
    smtp_max_attempts: int = Field(default=8, ge=1)
    smtp_retry_base: float = Field(default=5.0, gt=0, description="seconds before the 1st retry, doubled each time")
    smtp_retry_max: float = Field(default=1800.0, gt=0)
    smtp_lease: float = Field(default=300.0, gt=0, description="seconds a claimed email is reserved for one sender")
    # Negative balances: the reminder `reminder_grace` after the crossing (time for the payments
    # service's PaymentDeclared to arrive), then a digest every `reminder_interval` while the
    # balance stays negative and is not covered by pending payments.
    reminder_grace: timedelta = timedelta(minutes=2)
    reminder_interval: timedelta = timedelta(days=7)
    reminder_check_interval: float = Field(default=30.0, gt=0, description="seconds between reminder scans")
    # Outbound webhooks (webhooks.py): the sender's pace, the retries (capped exponential
    # backoff: base, 4x, 16x... up to the max, for `webhook_retry_for`), and when an endpoint
    # that accepts nothing is disabled (its group's coordinators are emailed).
    webhook_poll_interval: float = Field(default=1.0, gt=0)
    webhook_batch_size: int = Field(default=50, gt=0)
    webhook_concurrency: int = Field(default=8, gt=0)
    webhook_timeout: float = Field(default=10.0, gt=0, description="seconds an endpoint has to answer")
    webhook_lease: float = Field(default=60.0, gt=0, description="seconds a claimed delivery is reserved")
    webhook_retry_base: float = Field(default=5.0, gt=0)
    webhook_retry_max: float = Field(default=6 * 3600.0, gt=0)
    webhook_retry_for: timedelta = timedelta(days=3)
    webhook_disable_after: timedelta = timedelta(days=5)
    # Plain http:// endpoints (local development and tests only; never in production).
    webhook_allow_http: bool = False
    # Dates in emails of a group orders has not yet announced a time zone for (each group's own
    # time zone comes with its settings).
    timezone: str = "Europe/Paris"
