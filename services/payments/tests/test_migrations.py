"""The schema history: 0002 keeps what orders recorded under 0001 owe, and goes back down."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import uuid4

import asyncpg
from alembic import command
from sqlalchemy.engine import make_url

import cagette_payments
from cagette_runtime.migrations import alembic_config
from cagette_runtime.testing import IsolatedServers

MIGRATIONS = str(Path(cagette_payments.__file__).parent / "migrations")


async def test_upgrade_carries_amounts_owed_over_and_downgrade_restores_them(servers: IsolatedServers) -> None:
    url = await servers.create_database("payments_migrations")
    config = alembic_config(url, MIGRATIONS)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    order, group, member, distribution = uuid4(), uuid4(), uuid4(), uuid4()

    await asyncio.to_thread(command.upgrade, config, "0001")
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO amounts_owed (order_id, group_id, member_id, distribution_id, payment_method, amount, currency) "
            "VALUES ($1, $2, $3, $4, 'cheque', 2190, 'EUR')", order, group, member, distribution)
    finally:
        await connection.close()

    await asyncio.to_thread(command.upgrade, config, "head")
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow("SELECT kind, group_id, member_id, distribution_id, amount, currency FROM owed_items WHERE item_id = $1", order)
        assert dict(row) == {"kind": "order", "group_id": group, "member_id": member, "distribution_id": distribution,
                             "amount": 2190, "currency": "EUR"}
        assert await connection.fetchval("SELECT to_regclass('amounts_owed')") is None
    finally:
        await connection.close()

    await asyncio.to_thread(command.downgrade, config, "0001")
    connection = await asyncpg.connect(dsn)
    try:
        assert await connection.fetchval("SELECT amount FROM amounts_owed WHERE order_id = $1", order) == 2190
        assert await connection.fetchval("SELECT to_regclass('payments')") is None
    finally:
        await connection.close()
