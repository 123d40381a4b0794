"""A broker vhost and a database of their own for one benchmark run (bench/consumer/*.py), on the
local servers, holding the runtime's messaging tables (outbox, inbox), removed at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .db import Database, drop_database, ensure_database
from .settings import DEFAULT_AMQP_URL, DEFAULT_POSTGRES_SERVER_URL
from .tables import messaging_metadata
from .testing import create_vhost, delete_vhost


@asynccontextmanager
async def messaging_scratch(vhost: str, database: str) -> AsyncIterator[tuple[str, str]]:
    """(amqp_url, database_url) of a new vhost and a new database with the messaging tables."""
    amqp_url = await create_vhost(DEFAULT_AMQP_URL, vhost)
    database_url = f"{DEFAULT_POSTGRES_SERVER_URL}/{database}"
    await ensure_database(database_url)
    setup = Database(database_url)
    async with setup.engine.begin() as connection:
        await connection.run_sync(messaging_metadata.create_all)
    await setup.dispose()
    try:
        yield amqp_url, database_url
    finally:
        await delete_vhost(DEFAULT_AMQP_URL, vhost)
        await drop_database(database_url)
