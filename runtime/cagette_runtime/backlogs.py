"""A backlog watched from the database by the two gauges it needs: how many rows wait, and how
long the oldest of them has waited (0 when none), so an alert sees a stuck queue of work."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, func, select

from .metrics import DatabaseGauge, seconds_since


def backlog_gauges(
    table: Table,
    waiting: ColumnElement[bool],
    count: tuple[str, str],
    oldest: tuple[str, str],
    since: str = "created_at",
) -> list[DatabaseGauge]:
    """The gauges of the rows of `table` that are `waiting`: `count` and `oldest` are each a
    gauge's name and documentation; the age is taken from the column `since`."""
    return [
        DatabaseGauge(*count, select(func.count()).select_from(table).where(waiting)),
        DatabaseGauge(*oldest, select(seconds_since(table.c[since])).where(waiting)),
    ]
