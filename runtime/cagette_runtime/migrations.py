"""Alembic, the same way for every service: `upgrade()` from code, `run_env()` from env.py."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData, pool, text
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


async def downgrade_async(database_url: str, migrations_location: str, revision: str = "base") -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(database_url, migrations_location), revision)


async def schema_drift(database_url: str, target_metadata: MetaData) -> list[object]:
    """What autogenerate would change to make the database match the service's tables and the
    runtime's outbox and inbox: empty when the migrations build exactly what the code declares."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from .tables import messaging_metadata

    combined = MetaData()
    for metadata in (messaging_metadata, target_metadata):
        for table in metadata.tables.values():
            table.to_metadata(combined)
    engine = create_async_engine(database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_server_default": True}), combined
                )
            )
    finally:
        await engine.dispose()


def run_env(target_metadata: MetaData | None = None) -> None:
    """Body of every service's migrations/env.py (online mode, async engine, advisory lock).
    Autogenerate compares the service's tables and the runtime's outbox and inbox."""
    from alembic import context

    from .tables import messaging_metadata

    targets = [messaging_metadata, *([target_metadata] if target_metadata is not None else [])]

    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic configuration without sqlalchemy.url")

    def run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=targets, transaction_per_migration=False)
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(run)
        await engine.dispose()

    asyncio.run(main())
