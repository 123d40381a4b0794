"""The notifications service's own Prometheus gauges, read from its database at each scrape."""

from __future__ import annotations

from sqlalchemy import func, select

from cagette_runtime.metrics import DatabaseGauge, backlog_gauges

from .delivery import FAILED, PENDING, SENDING, UNCERTAIN
from .tables import email_deliveries

# Not yet accepted by the server: waiting, or being sent right now.
pending = email_deliveries.c.status.in_((PENDING, SENDING))

GAUGES = [
    *backlog_gauges(
        email_deliveries,
        pending,
        count=(
            "cagette_notifications_emails_pending",
            "Emails written and not yet accepted by the SMTP server (the backlog)",
        ),
        oldest=(
            "cagette_notifications_oldest_pending_email_seconds",
            "Age of the oldest email not yet delivered (0 when none)",
        ),
    ),
    DatabaseGauge(
        "cagette_notifications_emails_uncertain",
        "Emails whose sender stopped mid-send: maybe received, not sent again by themselves",
        select(func.count()).select_from(email_deliveries).where(email_deliveries.c.status == UNCERTAIN),
    ),
    DatabaseGauge(
        "cagette_notifications_emails_failed",
        "Emails given up after their last attempt, by kind",
        select(email_deliveries.c.kind, func.count())
        .where(email_deliveries.c.status == FAILED)
        .group_by(email_deliveries.c.kind),
        labels=("kind",),
    ),
]
