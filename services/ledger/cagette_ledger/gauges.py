"""The ledger's own Prometheus gauges, read from its database at each scrape."""

from __future__ import annotations

from sqlalchemy import func, select

from cagette_runtime.metrics import DatabaseGauge

from .domain import HoldStatus
from .tables import holds

GAUGES = [
    DatabaseGauge(
        "cagette_ledger_holds_active",
        "Money-pot holds granted and not yet captured, released or expired",
        select(func.count())
        .select_from(holds)
        .where(holds.c.status == HoldStatus.ACTIVE, holds.c.expires_at > func.now()),
    ),
    DatabaseGauge(
        "cagette_ledger_holds_overdue",
        "Holds past their expiry the sweeper has not marked expired yet (reads already ignore them)",
        select(func.count())
        .select_from(holds)
        .where(holds.c.status == HoldStatus.ACTIVE, holds.c.expires_at <= func.now()),
    ),
]
