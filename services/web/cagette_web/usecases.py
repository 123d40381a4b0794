"""One function per action of the web service: accounts from orders' members, sign-in and
sign-out, setting and resetting a password, issuing access tokens, machine clients."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    InvitationCreated,
    Language,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    PasswordResetRequested,
)
from cagette_runtime import outbox
from cagette_runtime.auth import Principal, sign_claims, token_claims
from cagette_runtime.clock import now
from cagette_runtime.db import Database
from cagette_runtime.errors import Invalid, NotFound, Refused, Unauthenticated
from cagette_runtime.memberships import apply_member_event

from . import domain, store
from .domain import INVITATION, PASSWORD_RESET, new_secret, secret_hash
from .keys import KeyRing
from .passwords import hash_password, verify_password
from .settings import WebSettings
from .tables import memberships

log = logging.getLogger(__name__)

NO_GROUP = UUID(int=0)


class SignInRefused(Refused):
    """The sign-in page shows the message named by `reason` (a key of the i18n strings)."""

    status_code = 401
    code = "sign_in_refused"


# ------------------------------------------------------------------ accounts from orders


def set_password_link(settings: WebSettings, token: str) -> str:
    return f"{settings.web_public_url.rstrip('/')}/set-password?{urlencode({'token': token})}"


async def new_link(
    session: AsyncSession, settings: WebSettings, account_id: UUID, purpose: str
) -> tuple[str, datetime]:
    token = new_secret()
    lifetime = (
        timedelta(days=settings.invitation_days)
        if purpose == INVITATION
        else timedelta(minutes=settings.reset_link_minutes)
    )
    expires_at = now() + lifetime
    await store.add_link(session, secret_hash(token), account_id, purpose, expires_at)
    return set_password_link(settings, token), expires_at


async def on_member_event(
    session: AsyncSession, settings: WebSettings, event: MemberJoined | MemberUpdated | MemberLeft
) -> None:
    """Keep the memberships copy (roles of the next tokens) and the accounts; invite a new
    person to set a password; end a removed person's sessions at once."""
    await apply_member_event(session, memberships, event)
    if isinstance(event, MemberLeft):
        ended = await store.end_sessions_of(session, event.member_id)
        log.info("member %s left group %s: %d session(s) ended", event.member_id, event.group_id, ended)
        return
    email = str(event.email).lower()
    holder = await store.account_by_email(session, email)
    if holder is not None and holder.account_id != event.member_id:
        log.warning(
            "e-mail of member %s already belongs to account %s: account left unchanged",
            event.member_id,
            holder.account_id,
        )
        return
    existing = await store.account_by_id(session, event.member_id, for_update=True)
    if isinstance(event, MemberUpdated) and existing is not None and existing.email != email:
        # A changed address: links sent to the old one must not work any more.
        await store.use_links_of(session, event.member_id, now())
    await store.upsert_account(session, event.member_id, email, event.name, event.language)
    if isinstance(event, MemberJoined) and (existing is None or existing.password_hash is None):
        link, expires_at = await new_link(session, settings, event.member_id, INVITATION)
        await outbox.add(
            session,
            InvitationCreated(
                account_id=event.member_id,
                email=email,
                name=event.name,
                language=event.language,
                link=link,
                expires_at=expires_at,
                **outbox.event_context(event.group_id),
            ),
        )


async def create_admin(db: Database, settings: WebSettings, email: str, name: str, language: Language) -> str:
    """A platform administrator's account; returns the single-use link to set its password."""
    address = domain.normalise_email(email)
    async with db.transaction() as session:
        account = await store.account_by_email(session, address)
        account_id = account.account_id if account else uuid4()
        await store.upsert_account(session, account_id, address, name, language, platform_admin=True)
        await store.grant_platform_admin(session, account_id)
        link, _ = await new_link(session, settings, account_id, PASSWORD_RESET)
    return link


# ------------------------------------------------------------------ passwords


async def link_problem(db: Database, token: str) -> str | None:
    async with db.transaction() as session:
        return domain.link_problem(await store.link_by_hash(session, secret_hash(token)), now())


async def set_password(db: Database, token: str, password: str, confirmation: str) -> UUID:
    """Set the password through a single-use link; returns the account (then signed in)."""
    domain.check_new_password(password, confirmation)
    password_hash = await hash_password(password)
    async with db.transaction() as session:
        link = await store.link_by_hash(session, secret_hash(token), for_update=True)
        if problem := domain.link_problem(link, now()):
            raise Invalid(problem)
        assert link is not None
        await store.set_password_hash(session, link.account_id, password_hash)
        await store.use_links_of(session, link.account_id, now())
        # A new password ends every other session of the account.
        await store.end_sessions_of(session, link.account_id)
        return link.account_id


async def request_reset(db: Database, settings: WebSettings, email: str) -> None:
    """Send a reset link if the account exists; the answer is the same either way."""
    try:
        address = domain.normalise_email(email)
    except Invalid:
        return
    async with db.transaction() as session:
        account = await store.account_by_email(session, address)
        if account is None:
            return
        groups = await store.current_roles(session, account.account_id)
        link, expires_at = await new_link(session, settings, account.account_id, PASSWORD_RESET)
        await outbox.add(
            session,
            PasswordResetRequested(
                account_id=account.account_id,
                email=account.email,
                name=account.name,
                language=account.language,
                link=link,
                expires_at=expires_at,
                **outbox.event_context(min(groups, default=NO_GROUP)),
            ),
        )


# ------------------------------------------------------------------ sessions


@dataclass(frozen=True)
class OpenSession:
    session_id: str  # goes in the cookie; only its hash is stored
    csrf_token: str


async def open_session(db: Database, settings: WebSettings, account_id: UUID) -> OpenSession:
    opened = OpenSession(new_secret(), new_secret())
    async with db.transaction() as session:
        await store.add_session(
            session,
            secret_hash(opened.session_id),
            account_id,
            opened.csrf_token,
            now() + timedelta(hours=settings.session_hours),
        )
    return opened


async def sign_in(db: Database, settings: WebSettings, email: str, password: str, client_address: str) -> OpenSession:
    """A session for the right e-mail and password. Every refusal is one of two messages, the
    same whether or not the account exists: wrong e-mail or password, or too many attempts."""
    try:
        address = domain.normalise_email(email)
    except Invalid:
        raise SignInRefused("wrong_credentials") from None
    since = now() - timedelta(minutes=settings.sign_in_window_minutes)
    async with db.transaction() as session:
        by_account, by_address = await store.failures_since(session, address, client_address, since)
        if domain.too_many_failures(
            by_account,
            by_address,
            per_account=settings.sign_in_failures_per_account,
            per_address=settings.sign_in_failures_per_address,
        ):
            raise SignInRefused("too_many_attempts")
        account = await store.account_by_email(session, address)
    if not await verify_password(account.password_hash if account else None, password):
        async with db.transaction() as session:
            await store.record_failure(session, address, client_address, now())
        raise SignInRefused("wrong_credentials")
    assert account is not None
    async with db.transaction() as session:
        await store.forget_failures(session, address)
    return await open_session(db, settings, account.account_id)


@dataclass(frozen=True)
class SignedIn:
    account: store.Account
    csrf_token: str
    roles: dict[UUID, str]


async def signed_in(db: Database, session_id: str | None) -> SignedIn | None:
    """The live session behind a cookie value (None for a missing, ended, expired or forged one)."""
    if not session_id or len(session_id) > 100:
        return None
    async with db.transaction() as session:
        found = await store.live_session(session, secret_hash(session_id), now())
        if found is None:
            return None
        account = await store.account_by_id(session, found.account_id)
        if account is None:
            return None
        roles = await store.current_roles(session, account.account_id)
    return SignedIn(account, found.csrf_token, {group: role.value for group, role in roles.items()})


async def sign_out(db: Database, session_id: str | None) -> None:
    if session_id:
        async with db.transaction() as session:
            await store.end_session(session, secret_hash(session_id))


# ------------------------------------------------------------------ tokens


@dataclass(frozen=True)
class AccessToken:
    access_token: str
    expires_in: int


def sign(keys: KeyRing, settings: WebSettings, principal: Principal, minutes: int, **extra: object) -> AccessToken:
    ttl = timedelta(minutes=minutes)
    claims = token_claims(
        principal, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl=ttl, extra=dict(extra)
    )
    key = keys.active
    return AccessToken(sign_claims(claims, key.private_key, key.key_id, key.algorithm), int(ttl.total_seconds()))


async def person_token(db: Database, keys: KeyRing, settings: WebSettings, account_id: UUID) -> AccessToken:
    """A short-lived token whose roles are the memberships known now."""
    async with db.transaction() as session:
        account = await store.account_by_id(session, account_id)
        if account is None:
            raise NotFound("no such account")
        roles = await store.current_roles(session, account_id)
    principal = Principal(user_id=account_id, roles=roles, platform_admin=account.platform_admin)
    return sign(keys, settings, principal, settings.access_token_minutes)


@dataclass(frozen=True)
class NewClient:
    client_id: UUID
    secret: str
    expires_at: datetime


async def create_client(db: Database, name: str, scope: list[str], days: float) -> NewClient:
    domain.parse_scope(scope)
    if not name.strip() or len(name) > 200 or domain.has_control_characters(name):
        raise Invalid("give the client a name (at most 200 characters)")
    secret = new_secret()
    created = NewClient(uuid4(), secret, now() + timedelta(days=days))
    async with db.transaction() as session:
        await store.add_client(
            session, created.client_id, name.strip(), await hash_password(secret), scope, created.expires_at
        )
    return created


async def revoke_client(db: Database, client_id: UUID) -> bool:
    async with db.transaction() as session:
        return await store.revoke_client(session, client_id, now())


async def client_token(db: Database, keys: KeyRing, settings: WebSettings, client_id: str, secret: str) -> AccessToken:
    """Client credentials -> a short-lived token carrying the client's scope (never a person's)."""
    refused = Unauthenticated("The client id or secret is wrong, or the client was revoked or has expired.")
    try:
        client_uuid = UUID(client_id)
    except ValueError:
        raise refused from None
    async with db.transaction() as session:
        client = await store.client_by_id(session, client_uuid)
    if not await verify_password(client.secret_hash if client else None, secret):
        raise refused
    assert client is not None
    if client.revoked_at is not None or client.expires_at <= now():
        raise refused
    grants = domain.parse_scope(client.scope)
    principal = Principal(user_id=client.client_id, roles=grants.roles, platform_admin=grants.admin, kind="client")
    return sign(keys, settings, principal, settings.client_token_minutes, scope=" ".join(client.scope))
