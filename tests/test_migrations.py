"""Each service's migrations build exactly the schema its code declares (tables.py plus the
runtime's outbox and inbox), and undo it. A change to a table without its migration fails here."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from cagette_runtime.migrations import downgrade_async, schema_drift, upgrade_async

SERVICES = ["orders", "ledger", "payments", "notifications", "web"]


async def table_names(url: str) -> set[str]:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            return {row.tablename for row in rows}
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_build_the_declared_schema_and_undo_it(servers, service: str) -> None:
    package = importlib.import_module(f"cagette_{service}")
    location = str(Path(package.__file__).parent / "migrations")
    metadata = importlib.import_module(f"cagette_{service}.tables").metadata
    url = await servers.create_database(f"migrations_{service}")

    await upgrade_async(url, location)
    assert await schema_drift(url, metadata) == []
    assert {"outbox_messages", "inbox_messages", *metadata.tables} <= await table_names(url)

    await downgrade_async(url, location)
    assert await table_names(url) == {"alembic_version"}
    await upgrade_async(url, location)
    assert await schema_drift(url, metadata) == []
