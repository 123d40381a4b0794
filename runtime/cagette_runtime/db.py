"""One async SQLAlchemy engine per service database, and the transaction every change runs in."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

from sqlalchemy import Row, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from .errors import RetryLater

OUTBOX_WRITTEN = "cagette.outbox_written"
# Callbacks a transaction's session runs once it committed (session.info[AFTER_COMMIT]): the
# idempotency mechanism learns there that an effect it bound to its key is committed.
AFTER_COMMIT = "cagette.after_commit"

# A result row of any columns, for code that reads a few of them by name.
AnyRow: TypeAlias = Row[*tuple[Any, ...]]

# SQLSTATEs that tell the server's state, not the statement's: the connection failed or was lost
# (class 08), the server is shutting down or starting (57P01-57P03), it has no connection left
# (53300), or the transaction lost a race (40001 serialization failure, 40P01 deadlock). The
# same transaction again later may well succeed.
TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "40001", "40P01")


def as_retry_later(exc: BaseException) -> RetryLater | None:
    """The RetryLater that `exc` stands for when it is an infrastructure failure (the database
    unreachable or lost, a connection timing out, a transaction that lost a race), else None."""
    if isinstance(exc, RetryLater):
        return exc
    if isinstance(exc, DBAPIError):
        sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
        if exc.connection_invalidated or sqlstate.startswith(TRANSIENT_SQLSTATES):
            return RetryLater(f"the database is unavailable right now ({sqlstate or type(exc.orig).__name__})")
        return None
    sqlstate = str(getattr(exc, "sqlstate", "") or "")  # asyncpg's own errors, outside SQLAlchemy
    # Connecting: refused, reset, unknown host, timed out; a plain OSError is asyncio's "Connect
    # call failed" for several addresses (its subclasses, e.g. FileNotFoundError, are not outages).
    if (
        isinstance(exc, (ConnectionError, TimeoutError, PoolTimeout, socket.gaierror))
        or type(exc) is OSError
        or sqlstate.startswith(TRANSIENT_SQLSTATES)
    ):
        return RetryLater(f"a server this service needs is unavailable right now ({type(exc).__name__})")
    return None


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(
            # hide_parameters: an error's message (and so its logged traceback) never carries
            # the values of a statement (names, emails, IBANs).
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            # No ping per checkout (it cost a BEGIN/ROLLBACK round trip on every transaction):
            # a connection the server dropped fails its first statement, SQLAlchemy then
            # invalidates every pooled connection as old as it, and the failure is an outage
            # (`as_retry_later`: the message retried uncounted, HTTP 503 with Retry-After).
            pool_pre_ping=False,
            pool_recycle=1800,
            hide_parameters=True,
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._after_outbox_commit: list[Callable[[], None]] = []

    def on_outbox_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` after each commit that wrote outbox rows (wakes the relay at once)."""
        self._after_outbox_commit.append(callback)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one database transaction: committed on success, rolled back on error."""
        async with self.sessionmaker() as session:
            async with session.begin():
                yield session
            for committed in session.info.pop(AFTER_COMMIT, ()):
                committed()
            if session.info.pop(OUTBOX_WRITTEN, False):
                for callback in self._after_outbox_commit:
                    callback()

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """A read-only session whose statements all see one committed state (REPEATABLE READ):
        a page that reads a balance and then the entries behind it never shows a posting the
        balance does not include (READ COMMITTED takes a new snapshot per statement)."""
        async with self.sessionmaker() as session:
            await session.connection(
                execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
            )
            try:
                yield session
            finally:
                await session.rollback()  # nothing to commit

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it does not exist. True when it was created."""
    import asyncpg

    parsed = make_url(url)
    name = parsed.database
    server_dsn = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    connection = await asyncpg.connect(server_dsn)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        await connection.execute(f'CREATE DATABASE "{name}"')
        return True
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await connection.close()


async def drop_database(url: str) -> None:
    import asyncpg

    parsed = make_url(url)
    server_dsn = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    connection = await asyncpg.connect(server_dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    finally:
        await connection.close()
