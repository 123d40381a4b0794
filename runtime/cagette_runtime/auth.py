"""Bearer JWT auth: a user id, a role per group, and the platform-admin flag.

Members see only their own account, coordinators their group, nobody crosses groups; the
checks live on `Principal` so every service asks them the same way.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import UUID, uuid4

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from cagette_contracts import Role

from .errors import Forbidden, Unauthenticated
from .ratelimit import FailureLimiter
from .settings import DEV_JWT_SECRET, ServiceSettings

ALGORITHM = "HS256"


class Principal(BaseModel):
    user_id: UUID
    roles: dict[UUID, Role] = {}
    platform_admin: bool = False

    def role_in(self, group_id: UUID) -> Role | None:
        return self.roles.get(group_id)

    def require_group_member(self, group_id: UUID) -> None:
        if not self.platform_admin and group_id not in self.roles:
            raise Forbidden(f"you are not a member of group {group_id}")

    def require_coordinator(self, group_id: UUID) -> None:
        if not self.platform_admin and self.roles.get(group_id) != Role.COORDINATOR:
            raise Forbidden(f"this needs the coordinator role in group {group_id}")

    def require_self_or_coordinator(self, group_id: UUID, member_id: UUID) -> None:
        """A member may read their own account; a coordinator any account of their group."""
        if member_id == self.user_id and group_id in self.roles:
            return
        self.require_coordinator(group_id)

    def require_platform_admin(self) -> None:
        if not self.platform_admin:
            raise Forbidden("this needs the platform administrator role")


def encode_token(
    principal: Principal, secret: str, *, issuer: str = "cagette", ttl: timedelta = timedelta(hours=12)
) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(principal.user_id),
        "roles": {str(group): role.value for group, role in principal.roles.items()},
        "admin": principal.platform_admin,
        "iss": issuer,
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(token: str, secret: str, *, issuer: str = "cagette") -> Principal:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], issuer=issuer, options={"require": ["sub", "exp", "iss"]}
        )
        return Principal(
            user_id=claims["sub"], roles=claims.get("roles") or {}, platform_admin=bool(claims.get("admin"))
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the bearer token has expired") from None
    except (jwt.InvalidTokenError, ValidationError, KeyError) as exc:
        raise Unauthenticated(f"invalid bearer token: {exc}") from None


_bearer = HTTPBearer(auto_error=False, description="JWT minted by `cagette-token`")


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise Unauthenticated("missing bearer token (Authorization: Bearer <jwt>)")
    settings: ServiceSettings = request.app.state.settings
    # Guessing tokens is slowed down per client address: 429 once it failed too often.
    failures: FailureLimiter | None = getattr(request.app.state, "auth_failures", None)
    client = request.client.host if request.client else "unknown"
    if failures is not None:
        await failures.check(client)
    try:
        return decode_token(credentials.credentials, settings.jwt_secret, issuer=settings.jwt_issuer)
    except Unauthenticated:
        if failures is not None:
            await failures.failed(client)
        raise


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def mint_token_cli(argv: list[str] | None = None) -> None:
    """`cagette-token --user U --coordinator G --member G2 [--admin]`: print a token for local use."""
    parser = argparse.ArgumentParser(prog="cagette-token", description=mint_token_cli.__doc__)
    parser.add_argument("--user", type=UUID, default=None, help="user id (a new one if omitted)")
    parser.add_argument("--member", type=UUID, action="append", default=[], metavar="GROUP_ID")
    parser.add_argument("--coordinator", type=UUID, action="append", default=[], metavar="GROUP_ID")
    parser.add_argument("--admin", action="store_true", help="platform administrator")
    parser.add_argument("--hours", type=float, default=12.0, help="validity in hours")
    parser.add_argument(
        "--secret", default=None, help="signing secret (default: $CAGETTE_JWT_SECRET or the dev secret)"
    )
    args = parser.parse_args(argv)
    settings = ServiceSettings()
    secret = args.secret or settings.jwt_secret
    roles = {group: Role.MEMBER for group in args.member} | {group: Role.COORDINATOR for group in args.coordinator}
    principal = Principal(user_id=args.user or uuid4(), roles=roles, platform_admin=args.admin)
    if secret == DEV_JWT_SECRET:
        import sys

        print("warning: signed with the development secret", file=sys.stderr)
    print(encode_token(principal, secret, issuer=settings.jwt_issuer, ttl=timedelta(hours=args.hours)))
