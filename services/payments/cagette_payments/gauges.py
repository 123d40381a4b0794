"""The payments service's own Prometheus gauges, read from its database at each scrape.

Payments does not know distribution dates (orders keeps them), so "pending past its
distribution" is watched through the age of the oldest pending payment: with weekly
distributions, one older than about a week was not settled at its distribution."""

from __future__ import annotations

from sqlalchemy import func, select

from cagette_runtime.metrics import DatabaseGauge, backlog_gauges

from .domain.methods import DECLARED_METHODS
from .tables import card_jobs, payments

pending_manual = (
    (payments.c.state == "declared") & (payments.c.kind == "payment") & payments.c.method.in_(sorted(DECLARED_METHODS))
)

GAUGES = [
    DatabaseGauge(
        "cagette_payments_card_jobs_due",
        "Card provider jobs (fees) due and not done",
        select(func.count())
        .select_from(card_jobs)
        .where(card_jobs.c.done_at.is_(None), card_jobs.c.next_attempt_at <= func.now()),
    ),
    *backlog_gauges(
        payments,
        pending_manual,
        count=(
            "cagette_payments_pending_manual_payments",
            "Declared cheque, transfer, cash and on-the-spot payments not yet received or cancelled",
        ),
        oldest=(
            "cagette_payments_oldest_pending_manual_payment_seconds",
            "Age of the oldest pending manual payment (0 when none)",
        ),
    ),
]
