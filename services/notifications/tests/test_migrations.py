"""Migration 0004 on a database made before it: members keep their rows, with no role (unknown)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

import cagette_notifications
from alembic import command

from cagette_runtime.migrations import alembic_config, upgrade

MIGRATIONS = str(Path(cagette_notifications.__file__).parent / "migrations")


async def test_0004_adds_a_nullable_checked_role_to_existing_members(servers) -> None:
    url = await servers.create_database(f"notif_mig_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade, url, MIGRATIONS, "0003")
    engine = create_async_engine(url)
    group_id, member_id = uuid.uuid4(), uuid.uuid4()
    try:
        async with engine.begin() as conn:
            # 0001 creates member_directory from today's metadata: take it back to its pre-0004 shape.
            await conn.execute(text("ALTER TABLE member_directory DROP CONSTRAINT member_directory_role"))
            await conn.execute(text("ALTER TABLE member_directory DROP COLUMN role"))
            await conn.execute(
                text("INSERT INTO member_directory (group_id, member_id, name, email, language) "
                     "VALUES (:g, :m, 'Cora', 'cora@example.org', 'fr')"),
                {"g": group_id, "m": member_id},
            )
        await asyncio.to_thread(upgrade, url, MIGRATIONS, "head")
        async with engine.begin() as conn:
            assert (await conn.execute(text("SELECT name, role FROM member_directory"))).all() == [("Cora", None)]
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one() == "0004"
        with pytest.raises(IntegrityError, match="member_directory_role"):
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE member_directory SET role = 'admin'"))
        # Down and up again.
        await asyncio.to_thread(command.downgrade, alembic_config(url, MIGRATIONS), "0003")
        async with engine.begin() as conn:
            columns = (await conn.execute(text(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'member_directory'"
            ))).scalars().all()
            assert "role" not in columns and "email" in columns
        await asyncio.to_thread(upgrade, url, MIGRATIONS, "head")
        # Running it on a database created at head (where 0001 already made the column) is a no-op.
        fresh = await servers.create_database(f"notif_mig_{uuid.uuid4().hex[:8]}")
        await asyncio.to_thread(upgrade, fresh, MIGRATIONS, "head")
    finally:
        await engine.dispose()
