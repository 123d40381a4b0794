"""Rows kept from state events ("full state: the newest wins"): one upsert for every service that
keeps a copy of another's state, whatever order the events arrive in."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert


def newest_wins(table: Table, key: dict[str, Any], values: dict[str, Any], stamp: str) -> Insert:
    """Insert the row `key` + `values`; when a row with that key exists, update it to `values` only
    if they are newer by the column `stamp` (an older event delivered late changes nothing)."""
    statement = pg_insert(table).values(**key, **values)
    return statement.on_conflict_do_update(
        index_elements=[table.c[name] for name in key],
        set_=values,
        where=table.c[stamp] < statement.excluded[stamp],
    )
