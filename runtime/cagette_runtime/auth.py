"""Bearer access tokens: who the caller is, and the roles they hold now.

Tokens are JWTs signed with an asymmetric key (EdDSA or RS256) by an issuer this service
trusts: the web service (its public keys at its JWKS URL), an external OpenID Connect provider
when one is configured, and in development only the development key that `cagette-token` and
the tests sign with. HS256 (the old shared secret), `alg=none`, another audience, an expired
token or one living longer than the cap are refused with a plain sentence.

Roles are current: after the signature, `authenticate` bounds the token's roles by the
memberships this service knows now (its `MembershipDirectory`), so a demotion or a removal
counts as soon as the service has consumed the event, whatever the token says.

Members see only their own account, coordinators their group, nobody crosses groups; the
checks live on `Principal` so every service asks them the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID, uuid4

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from cagette_contracts import Role

from . import clock
from .errors import Forbidden, RetryLater, Unauthenticated
from .ratelimit import FailureLimiter
from .rows import record
from .settings import ServiceSettings

ACCEPTED_ALGORITHMS = ("EdDSA", "RS256")

# The development signing key: public on purpose, like the development database URL. Tokens it
# signs are accepted only outside production mode (production never trusts it).
DEV_KEY_ID = "cagette-development"
DEV_SIGNING_KEY_PEM = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIMBTJpqZ54A8wDQMnNpY1OUwAG9IO7lnm9f/jYwwD9JM
-----END PRIVATE KEY-----
"""
# What `cagette-token` and the test helpers give by default; the services cap any lifetime.
DEFAULT_TEST_TOKEN_LIFETIME = timedelta(minutes=30)


class Principal(BaseModel):
    user_id: UUID
    roles: dict[UUID, Role] = {}
    platform_admin: bool = False
    # "person" (a signed-in human, roles kept current) or "client" (a machine client: its
    # roles are the scope it was registered with, revocable at the issuer).
    kind: Literal["person", "client"] = "person"
    # Our issuer's tokens name the roles they may use (a ceiling, see current_principal); an
    # external provider's tokens name none: their roles are only the memberships known.
    roles_in_token: bool = True

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


# ------------------------------------------------------------------ signing


def dev_signing_key() -> Ed25519PrivateKey:
    key = load_pem_private_key(DEV_SIGNING_KEY_PEM, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def token_claims(
    principal: Principal,
    *,
    issuer: str,
    audience: str,
    ttl: timedelta,
    now: datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    issued = now or clock.now()
    return {
        "iss": issuer,
        "aud": audience,
        "sub": str(principal.user_id),
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": uuid4().hex,
        "roles": {str(group): role.value for group, role in principal.roles.items()},
        "admin": principal.platform_admin,
        "kind": principal.kind,
        **(extra or {}),
    }


def sign_claims(
    claims: dict[str, Any], key: Ed25519PrivateKey | RSAPrivateKey, key_id: str, algorithm: str = "EdDSA"
) -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": key_id})


def encode_token(
    principal: Principal,
    legacy_secret: str | None = None,
    *,
    issuer: str = "cagette",
    audience: str = "cagette",
    ttl: timedelta = DEFAULT_TEST_TOKEN_LIFETIME,
) -> str:
    """A token signed with the development key, for tests and local scripts only (production
    never accepts it). `legacy_secret` is ignored: it keeps the old call form working."""
    del legacy_secret
    claims = token_claims(principal, issuer=issuer, audience=audience, ttl=ttl)
    return sign_claims(claims, dev_signing_key(), DEV_KEY_ID)


def public_jwk(key: object, key_id: str) -> dict[str, Any]:
    """The public half of a signing key as a JWK (for a JWKS document)."""
    if isinstance(key, Ed25519PrivateKey):
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
        algorithm = "EdDSA"
    elif isinstance(key, RSAPrivateKey):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        algorithm = "RS256"
    else:
        raise TypeError(f"unsupported signing key type {type(key).__name__}")
    return {**jwk, "kid": key_id, "alg": algorithm, "use": "sig"}


# ------------------------------------------------------------------ verification


class _Claims(BaseModel):
    """The claims read from a verified token, each with its exact JSON type."""

    user_id: UUID
    roles: dict[UUID, Role]
    admin: bool
    kind: Literal["person", "client"]


def _read_claims(claims: dict[str, Any], user_id_claim: str, roles_from_token: bool) -> _Claims:
    """Exact types: `"admin": "false"` or a role list instead of a map is a refused token, not a
    guess. Each reason is a sentence."""
    raw_user = claims.get(user_id_claim)
    if not isinstance(raw_user, str):
        raise Unauthenticated(f"The bearer token's {user_id_claim!r} claim must be a string holding a user id.")
    try:
        user_id = UUID(raw_user)
    except ValueError:
        raise Unauthenticated(f"The bearer token's {user_id_claim!r} claim is not a user id (a UUID).") from None
    for name in ("iat", "exp"):
        if not isinstance(claims.get(name), int) or isinstance(claims.get(name), bool):
            raise Unauthenticated(f"The bearer token's {name!r} claim must be a whole number of seconds.")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise Unauthenticated("The bearer token has no 'jti' claim (a unique token id).")
    roles: dict[UUID, Role] = {}
    admin = False
    kind: Literal["person", "client"] = "person"
    if roles_from_token:
        raw_roles = claims.get("roles", {})
        if not isinstance(raw_roles, dict):
            raise Unauthenticated("The bearer token's 'roles' claim must map group ids to roles.")
        for group, role in raw_roles.items():
            try:
                roles[UUID(group)] = Role(role)
            except (ValueError, TypeError):
                raise Unauthenticated(
                    f"The bearer token's 'roles' claim has {role!r} for {group!r}: expected 'member' or 'coordinator' "
                    "for a group id."
                ) from None
        raw_admin = claims.get("admin", False)
        if not isinstance(raw_admin, bool):
            raise Unauthenticated("The bearer token's 'admin' claim must be true or false.")
        admin = raw_admin
        raw_kind = claims.get("kind", "person")
        if raw_kind not in ("person", "client"):
            raise Unauthenticated("The bearer token's 'kind' claim must be 'person' or 'client'.")
        kind = raw_kind
    return _Claims(user_id=user_id, roles=roles, admin=admin, kind=kind)


@dataclass
class TrustedIssuer:
    """An issuer whose tokens this service accepts, and where its public keys come from."""

    issuer: str
    audience: str
    jwks_url: str | None = None
    discovery_url: str | None = None
    static_keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    user_id_claim: str = "sub"
    # Our own issuer's tokens carry roles and the admin flag; an external provider's do not.
    roles_from_token: bool = True
    cache_seconds: float = 300.0
    refetch_cooldown_seconds: float = 30.0
    _client: jwt.PyJWKClient | None = None
    # Keys fetched from the JWKS, with when: served without a thread hop while fresh.
    _fetched: dict[str, tuple[jwt.PyJWK, float]] = field(default_factory=dict, repr=False)

    def _jwks_client(self) -> jwt.PyJWKClient:
        if self._client is None:
            url = self.jwks_url
            if url is None:
                assert self.discovery_url is not None
                with urllib.request.urlopen(self.discovery_url, timeout=10) as response:
                    url = str(json.load(response)["jwks_uri"])
                self.jwks_url = url
            self._client = jwt.PyJWKClient(
                url,
                cache_keys=True,
                lifespan=self.cache_seconds,
                timeout=10,
                cooldown_duration=self.refetch_cooldown_seconds,
            )
        return self._client

    def signing_key(self, key_id: str) -> jwt.PyJWK:
        """Blocking (may fetch the JWKS): call it off the event loop."""
        if key_id in self.static_keys:
            return self.static_keys[key_id]
        if self.jwks_url is None and self.discovery_url is None:
            raise jwt.PyJWKClientError(f"no key {key_id}")
        return self._jwks_client().get_signing_key(key_id)

    def known_key(self, key_id: str) -> jwt.PyJWK | None:
        """The key if it needs no fetch: a static one, or one fetched less than `cache_seconds` ago."""
        if key_id in self.static_keys:
            return self.static_keys[key_id]
        fetched = self._fetched.get(key_id)
        if fetched is not None and time.monotonic() - fetched[1] < self.cache_seconds:
            return fetched[0]
        return None

    async def key(self, key_id: str) -> jwt.PyJWK:
        """The signing key; only a fetch (a miss or a stale key) goes to a thread, every request
        signed with a known key is verified on the event loop (a thread hop per request showed
        in the profiles)."""
        known = self.known_key(key_id)
        if known is not None:
            return known
        key = await asyncio.to_thread(self.signing_key, key_id)
        self._fetched[key_id] = (key, time.monotonic())
        return key


def trusted_issuers(settings: ServiceSettings) -> list[TrustedIssuer]:
    issuers = []
    own = TrustedIssuer(
        settings.jwt_issuer,
        settings.jwt_audience,
        jwks_url=settings.jwt_jwks_url or None,
        cache_seconds=settings.jwks_cache_seconds,
        refetch_cooldown_seconds=settings.jwks_refetch_cooldown_seconds,
    )
    if not settings.production:
        own.static_keys[DEV_KEY_ID] = jwt.PyJWK(public_jwk(dev_signing_key(), DEV_KEY_ID))
    issuers.append(own)
    if settings.oidc_issuer:
        issuer = settings.oidc_issuer
        issuers.append(
            TrustedIssuer(
                issuer,
                settings.oidc_audience or settings.jwt_audience,
                jwks_url=settings.oidc_jwks_url,
                discovery_url=f"{issuer.rstrip('/')}/.well-known/openid-configuration",
                user_id_claim=settings.oidc_user_id_claim,
                roles_from_token=False,
                cache_seconds=settings.jwks_cache_seconds,
                refetch_cooldown_seconds=settings.jwks_refetch_cooldown_seconds,
            )
        )
    return issuers


class TokenVerifier:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.issuers = {issuer.issuer: issuer for issuer in trusted_issuers(settings)}

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.DecodeError:
            raise Unauthenticated("The bearer token is not a well-formed JWT.") from None
        algorithm = header.get("alg")
        if algorithm not in ACCEPTED_ALGORITHMS:
            raise Unauthenticated(
                f"The bearer token is signed with {algorithm!r}, which this service does not accept "
                f"(only {' or '.join(ACCEPTED_ALGORITHMS)} with its issuer's published key)."
            )
        claimed_issuer = unverified.get("iss")
        issuer = self.issuers.get(claimed_issuer) if isinstance(claimed_issuer, str) else None
        if issuer is None:
            raise Unauthenticated("The bearer token comes from an issuer this service does not trust.")
        key_id = header.get("kid")
        if not isinstance(key_id, str) or not key_id:
            raise Unauthenticated("The bearer token does not say which key signed it (no 'kid' header).")
        try:
            key = await issuer.key(key_id)
        except jwt.PyJWKClientConnectionError:
            raise RetryLater("The keys of the token's issuer cannot be fetched right now; try again shortly.") from None
        except (jwt.PyJWKClientError, OSError, KeyError, ValueError):
            raise Unauthenticated("The bearer token is signed with a key its issuer does not publish.") from None
        if key.algorithm_name != algorithm:
            raise Unauthenticated("The bearer token's algorithm does not match its key.")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=issuer.audience,
                issuer=issuer.issuer,
                leeway=self.settings.jwt_leeway_seconds,
                options={"require": ["iss", "aud", "sub", "exp", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("The bearer token has expired: get a new one.") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"The bearer token is meant for another audience, not {issuer.audience!r}.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"The bearer token has no {exc.claim!r} claim.") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("The bearer token is not valid yet (issued in the future).") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("The bearer token's signature does not match its issuer's key.") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("The bearer token is not valid.") from None
        read = _read_claims(claims, issuer.user_id_claim, issuer.roles_from_token)
        lifetime = claims["exp"] - claims["iat"]
        if lifetime > self.settings.jwt_max_lifetime_seconds:
            raise Unauthenticated(
                f"The bearer token lives {lifetime} seconds, longer than the {self.settings.jwt_max_lifetime_seconds} "
                "this service accepts: get a shorter-lived one."
            )
        return record(Principal, dict(read), platform_admin=read.admin, roles_in_token=issuer.roles_from_token)


# ------------------------------------------------------------------ current roles


class MembershipDirectory(Protocol):
    """The memberships a service knows now: for one person, each group it has heard of with
    their role there, or None when they left or were removed."""

    async def known_roles(self, user_id: UUID) -> dict[UUID, Role | None]: ...


ROLE_RANK = {Role.MEMBER: 0, Role.COORDINATOR: 1}


def current_principal(principal: Principal, known: dict[UUID, Role | None], *, trust_token_roles: bool) -> Principal:
    """The principal with the roles it holds now. The token's roles are a ceiling, the
    memberships this service knows are the truth: in a group the service has heard of, the
    lower of the two counts (a demotion or a removal wins at once; a promotion needs a new
    token, minutes away); in a group it has not heard of yet, the token's role counts only
    when `trust_token_roles`. An external provider's token names no roles: the memberships
    known are all there is. A machine client's roles are its registered scope."""
    if principal.kind == "client":
        return principal
    if not principal.roles_in_token:
        return principal.model_copy(update={"roles": {group: role for group, role in known.items() if role}})
    roles: dict[UUID, Role] = {}
    for group, claimed in principal.roles.items():
        if group not in known:
            if trust_token_roles:
                roles[group] = claimed
            continue
        current = known[group]
        if current is not None:
            roles[group] = min(claimed, current, key=ROLE_RANK.__getitem__)
    return principal.model_copy(update={"roles": roles})


_bearer = HTTPBearer(auto_error=False, description="Access token issued by the web service (short-lived, EdDSA)")


def token_verifier(request: Request) -> TokenVerifier:
    state = request.app.state
    verifier = getattr(state, "token_verifier", None)
    if verifier is None:
        verifier = state.token_verifier = TokenVerifier(state.settings)
    return verifier


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise Unauthenticated("Sign in first: the request has no bearer token (Authorization: Bearer <token>).")
    # Guessing tokens is slowed down per client address: 429 once it failed too often.
    failures: FailureLimiter | None = getattr(request.app.state, "auth_failures", None)
    client = request.client.host if request.client else "unknown"
    if failures is not None:
        await failures.check(client)
    try:
        principal = await token_verifier(request).verify(credentials.credentials)
    except Unauthenticated:
        if failures is not None:
            await failures.failed(client)
        raise
    settings: ServiceSettings = request.app.state.settings
    service = getattr(request.app.state, "service", None)
    directory: MembershipDirectory | None = getattr(service, "memberships", None)
    if directory is None:
        return principal
    known = await directory.known_roles(principal.user_id)
    return current_principal(principal, known, trust_token_roles=settings.trusts_token_roles)


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def mint_token_cli(argv: list[str] | None = None) -> None:
    """`cagette-token --user U --coordinator G --member G2 [--admin]`: print a token signed with
    the development key. For local development only: production never accepts these tokens
    (people sign in on the web service; machines use client credentials, see docs/identity.md)."""
    parser = argparse.ArgumentParser(prog="cagette-token", description=mint_token_cli.__doc__)
    parser.add_argument("--user", type=UUID, default=None, help="user id (a new one if omitted)")
    parser.add_argument("--member", type=UUID, action="append", default=[], metavar="GROUP_ID")
    parser.add_argument("--coordinator", type=UUID, action="append", default=[], metavar="GROUP_ID")
    parser.add_argument("--admin", action="store_true", help="platform administrator")
    parser.add_argument("--minutes", type=float, default=30.0, help="validity in minutes (the services cap it)")
    args = parser.parse_args(argv)
    settings = ServiceSettings()
    if settings.production:
        print(
            "cagette-token is for local development only; it refuses to run with CAGETTE_ENV=production",
            file=sys.stderr,
        )
        sys.exit(2)
    roles = {group: Role.MEMBER for group in args.member} | {group: Role.COORDINATOR for group in args.coordinator}
    principal = Principal(user_id=args.user or uuid4(), roles=roles, platform_admin=args.admin)
    print("development token: accepted only by services not in production mode", file=sys.stderr)
    print(
        encode_token(
            principal,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=timedelta(minutes=args.minutes),
        )
    )
