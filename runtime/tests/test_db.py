"""Database.snapshot: every statement of a read sees one committed state, and it writes nothing."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from cagette_runtime.db import Database

from .conftest import widgets


async def count(session) -> int:  # type: ignore[no-untyped-def]
    return int(await session.scalar(select(func.count()).select_from(widgets)) or 0)


async def add_widget(database: Database) -> None:
    async with database.transaction() as session:
        await session.execute(widgets.insert().values(widget_id=uuid.uuid4(), name="w"))


async def test_a_snapshot_does_not_see_what_commits_while_it_reads(database: Database) -> None:
    async with database.snapshot() as session:
        before = await count(session)
        await add_widget(database)  # commits between two statements of the read
        assert await count(session) == before
    async with database.snapshot() as session:
        assert await count(session) == before + 1


async def test_a_plain_session_would_see_it(database: Database) -> None:
    """Why the snapshot exists: READ COMMITTED takes a new snapshot per statement."""
    async with database.sessionmaker() as session:
        before = await count(session)
        await add_widget(database)
        assert await count(session) == before + 1


async def test_a_snapshot_is_read_only(database: Database) -> None:
    with pytest.raises(DBAPIError, match="read-only"):
        async with database.snapshot() as session:
            await session.execute(widgets.insert().values(widget_id=uuid.uuid4(), name="w"))
