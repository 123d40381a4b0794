"""The orders service's settings: the runtime's (CAGETTE_*) plus its own."""

from __future__ import annotations

from pydantic import Field

from cagette_runtime.settings import ServiceSettings

from .holds import HOLD_LIFETIME, RELEASE_GRACE, REQUEST_TIMEOUT


class OrdersSettings(ServiceSettings):
    service_name: str = "orders"
    # CAGETTE_ORDERS_HOLD_REQUEST_TIMEOUT: seconds the ledger has to decide a money-pot hold
    # (the request's grant_before and AMQP expiration; orders stops waiting then: 503).
    orders_hold_request_timeout: float = Field(default=REQUEST_TIMEOUT, gt=0, le=60)
    # CAGETTE_ORDERS_HOLD_LIFETIME_SECONDS: how long a granted hold counts if no debit captures it.
    orders_hold_lifetime_seconds: float = Field(default=HOLD_LIFETIME.total_seconds(), gt=0)
    # CAGETTE_ORDERS_HOLD_RECONCILE_SECONDS: how often holds whose order was never recorded are given back.
    orders_hold_reconcile_seconds: float = Field(default=10.0, gt=0)
    # CAGETTE_ORDERS_HOLD_RELEASE_GRACE_SECONDS: how long after a request's deadline that happens.
    orders_hold_release_grace_seconds: float = Field(default=RELEASE_GRACE.total_seconds(), ge=0)
