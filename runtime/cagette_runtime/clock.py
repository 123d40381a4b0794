"""The one clock: every timestamp and calendar date is UTC, whatever the server's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime


def now() -> datetime:
    return datetime.now(UTC)


def today() -> date:
    """Today's date in UTC (never the server's local date)."""
    return now().date()
