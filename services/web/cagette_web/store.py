"""Rows in and out of the web service's tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from sqlalchemy import CursorResult, Row, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Language, Role

from .domain import Link
from .tables import account_links, accounts, clients, memberships, sessions, sign_in_failures


@dataclass(frozen=True)
class Account:
    account_id: UUID
    email: str
    name: str
    language: Language
    password_hash: str | None
    platform_admin: bool


def _account(row: Row[Any] | None) -> Account | None:
    if row is None:
        return None
    mapping = row._mapping
    return Account(
        account_id=mapping["account_id"],
        email=mapping["email"],
        name=mapping["name"],
        language=Language(mapping["language"]),
        password_hash=mapping["password_hash"],
        platform_admin=mapping["platform_admin"],
    )


async def account_by_email(session: AsyncSession, email: str) -> Account | None:
    return _account((await session.execute(select(accounts).where(accounts.c.email == email))).first())


async def account_by_id(session: AsyncSession, account_id: UUID, *, for_update: bool = False) -> Account | None:
    statement = select(accounts).where(accounts.c.account_id == account_id)
    if for_update:
        statement = statement.with_for_update()
    return _account((await session.execute(statement)).first())


async def upsert_account(
    session: AsyncSession, account_id: UUID, email: str, name: str, language: Language, *, platform_admin: bool = False
) -> None:
    statement = pg_insert(accounts).values(
        account_id=account_id, email=email, name=name, language=language.value, platform_admin=platform_admin
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[accounts.c.account_id],
            set_={"email": email, "name": name, "language": language.value, "updated_at": func.now()},
        )
    )


async def grant_platform_admin(session: AsyncSession, account_id: UUID) -> None:
    await session.execute(
        update(accounts).where(accounts.c.account_id == account_id).values(platform_admin=True, updated_at=func.now())
    )


async def set_password_hash(session: AsyncSession, account_id: UUID, password_hash: str) -> None:
    await session.execute(
        update(accounts)
        .where(accounts.c.account_id == account_id)
        .values(password_hash=password_hash, updated_at=func.now())
    )


async def current_roles(session: AsyncSession, account_id: UUID) -> dict[UUID, Role]:
    rows = await session.execute(
        select(memberships.c.group_id, memberships.c.role).where(
            memberships.c.member_id == account_id, memberships.c.role.is_not(None)
        )
    )
    return {row.group_id: Role(row.role) for row in rows}


# --- links


async def add_link(session: AsyncSession, link_hash: str, account_id: UUID, purpose: str, expires_at: datetime) -> None:
    await session.execute(
        account_links.insert().values(
            link_hash=link_hash, account_id=account_id, purpose=purpose, expires_at=expires_at
        )
    )


async def link_by_hash(session: AsyncSession, link_hash: str, *, for_update: bool = False) -> Link | None:
    statement = select(account_links).where(account_links.c.link_hash == link_hash)
    if for_update:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    return Link(row.account_id, row.purpose, row.expires_at, row.used_at)


async def use_links_of(session: AsyncSession, account_id: UUID, now: datetime) -> None:
    """Every open link of the account is spent once a password is set through one of them."""
    await session.execute(
        update(account_links)
        .where(account_links.c.account_id == account_id, account_links.c.used_at.is_(None))
        .values(used_at=now)
    )


# --- sessions


@dataclass(frozen=True)
class Session:
    account_id: UUID
    csrf_token: str


async def add_session(
    session: AsyncSession, session_hash: str, account_id: UUID, csrf_token: str, expires_at: datetime
) -> None:
    await session.execute(
        sessions.insert().values(
            session_hash=session_hash, account_id=account_id, csrf_token=csrf_token, expires_at=expires_at
        )
    )


async def live_session(session: AsyncSession, session_hash: str, now: datetime) -> Session | None:
    row = (
        await session.execute(
            select(sessions.c.account_id, sessions.c.csrf_token).where(
                sessions.c.session_hash == session_hash, sessions.c.expires_at > now
            )
        )
    ).first()
    return Session(row.account_id, row.csrf_token) if row else None


async def end_session(session: AsyncSession, session_hash: str) -> None:
    await session.execute(delete(sessions).where(sessions.c.session_hash == session_hash))


async def end_sessions_of(session: AsyncSession, account_id: UUID) -> int:
    result = await session.execute(delete(sessions).where(sessions.c.account_id == account_id))
    return cast(CursorResult[Any], result).rowcount


# --- sign-in failures


async def failures_since(session: AsyncSession, email: str, client_address: str, since: datetime) -> tuple[int, int]:
    by_email = await session.scalar(
        select(func.count())
        .select_from(sign_in_failures)
        .where(sign_in_failures.c.email == email, sign_in_failures.c.failed_at > since)
    )
    by_address = await session.scalar(
        select(func.count())
        .select_from(sign_in_failures)
        .where(sign_in_failures.c.client_address == client_address, sign_in_failures.c.failed_at > since)
    )
    return int(by_email or 0), int(by_address or 0)


async def record_failure(session: AsyncSession, email: str, client_address: str, now: datetime) -> None:
    await session.execute(sign_in_failures.insert().values(email=email, client_address=client_address, failed_at=now))
    # Old rows count for nothing any more: keep the table small.
    await session.execute(delete(sign_in_failures).where(sign_in_failures.c.failed_at < now - timedelta(days=1)))


async def forget_failures(session: AsyncSession, email: str) -> None:
    await session.execute(delete(sign_in_failures).where(sign_in_failures.c.email == email))


# --- machine clients


@dataclass(frozen=True)
class Client:
    client_id: UUID
    name: str
    secret_hash: str
    scope: list[str]
    expires_at: datetime
    revoked_at: datetime | None


async def add_client(
    session: AsyncSession, client_id: UUID, name: str, secret_hash: str, scope: list[str], expires_at: datetime
) -> None:
    await session.execute(
        clients.insert().values(
            client_id=client_id, name=name, secret_hash=secret_hash, scope=scope, expires_at=expires_at
        )
    )


async def client_by_id(session: AsyncSession, client_id: UUID) -> Client | None:
    row = (await session.execute(select(clients).where(clients.c.client_id == client_id))).first()
    if row is None:
        return None
    return Client(row.client_id, row.name, row.secret_hash, list(row.scope), row.expires_at, row.revoked_at)


async def revoke_client(session: AsyncSession, client_id: UUID, now: datetime) -> bool:
    result = await session.execute(
        update(clients).where(clients.c.client_id == client_id, clients.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return cast(CursorResult[Any], result).rowcount > 0
