"""Alembic, the same way for every service: `upgrade()` from code, `run_env()` from env.py."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

# Replicas starting together must not migrate at the same time.
_MIGRATION_LOCK_ID = 7_402_311


def alembic_config(database_url: str, migrations_location: str) -> Config:
    config = Config()
    config.set_main_option("script_location", migrations_location)
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, migrations_location: str, revision: str = "head") -> None:
    """Apply migrations (blocking; run it in a thread from async code)."""
    command.upgrade(alembic_config(database_url, migrations_location), revision)


async def upgrade_async(database_url: str, migrations_location: str) -> None:
    await asyncio.to_thread(upgrade, database_url, migrations_location)


def run_env(target_metadata: MetaData | None = None) -> None:
    """Body of every service's migrations/env.py (online mode, async engine, advisory lock)."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")

    def run(connection) -> None:  # type: ignore[no-untyped-def]
        context.configure(connection=connection, target_metadata=target_metadata, transaction_per_migration=False)
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(run)
        await engine.dispose()

    asyncio.run(main())
