"""Access-token verification: asymmetric keys only (the issuer's JWKS, fetched over HTTP and
cached; the development key outside production), exact claim types, a capped lifetime, plain
reasons; and roles replaced by the memberships a service knows now."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from cagette_contracts import Role
from cagette_runtime.auth import (
    DEV_KEY_ID,
    Principal,
    TokenVerifier,
    current_principal,
    dev_signing_key,
    encode_token,
    mint_token_cli,
    public_jwk,
    sign_claims,
    token_claims,
)
from cagette_runtime.errors import Forbidden, Unauthenticated
from cagette_runtime.settings import DEV_JWT_SECRET, ServiceSettings, UnsafeSettings

GROUP_A, GROUP_B = uuid.uuid4(), uuid.uuid4()
ALICE, BOB = uuid.uuid4(), uuid.uuid4()


class JwksServer:
    """A real HTTP server publishing a JWKS that the test can change (key rotation)."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


def claims(principal: Principal, **overrides: Any) -> dict[str, Any]:
    return token_claims(principal, issuer="cagette", audience="cagette", ttl=timedelta(minutes=5)) | overrides


def settings(jwks_url: str = "", **values: Any) -> ServiceSettings:
    return ServiceSettings(service_name="test", jwt_jwks_url=jwks_url, **values)


async def test_round_trip_keeps_user_roles_and_admin_flag() -> None:
    principal = Principal(user_id=ALICE, roles={GROUP_A: Role.COORDINATOR, GROUP_B: Role.MEMBER}, platform_admin=True)
    assert await TokenVerifier(settings()).verify(encode_token(principal)) == principal


async def test_tokens_signed_with_the_issuers_published_keys_are_accepted_and_rotation_works(jwks) -> None:
    first, second = Ed25519PrivateKey.generate(), generate_private_key(public_exponent=65537, key_size=2048)
    jwks.keys = [public_jwk(first, "k1")]
    verifier = TokenVerifier(settings(jwks.url, env="production", jwks_refetch_cooldown_seconds=0))
    alice = Principal(user_id=ALICE)
    assert (await verifier.verify(sign_claims(claims(alice), first, "k1"))).user_id == ALICE
    assert (await verifier.verify(sign_claims(claims(alice), first, "k1"))).user_id == ALICE
    assert jwks.fetches == 1  # cached
    # Rotation: the issuer publishes a new key (here RS256) next to the old one and signs with it.
    jwks.keys = [public_jwk(first, "k1"), public_jwk(second, "k2")]
    assert (await verifier.verify(sign_claims(claims(alice), second, "k2", "RS256"))).user_id == ALICE
    assert jwks.fetches == 2  # an unknown kid refreshes the set
    # Production never trusts the development key, nor HS256 with the old secret.
    with pytest.raises(Unauthenticated, match="key its issuer does not publish"):
        await verifier.verify(encode_token(alice))
    legacy = jwt.encode(claims(alice), DEV_JWT_SECRET, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(Unauthenticated, match="HS256"):
        await verifier.verify(legacy)


async def test_a_known_key_is_used_without_a_thread_and_a_stale_one_is_asked_again(jwks, monkeypatch) -> None:
    key = Ed25519PrivateKey.generate()
    jwks.keys = [public_jwk(key, "k1")]
    verifier = TokenVerifier(
        settings(jwks.url, env="production", jwks_refetch_cooldown_seconds=0, jwks_cache_seconds=0.5)
    )
    alice = Principal(user_id=ALICE)
    assert (await verifier.verify(sign_claims(claims(alice), key, "k1"))).user_id == ALICE  # fetched in a thread
    real_to_thread = asyncio.to_thread
    hops: list[object] = []

    async def counting_to_thread(function: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops.append(function)
        return await real_to_thread(function, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting_to_thread)
    for _ in range(3):
        assert (await verifier.verify(sign_claims(claims(alice), key, "k1"))).user_id == ALICE
    assert hops == [] and jwks.fetches == 1
    await asyncio.sleep(0.6)  # past the cache: asked of the key client again, in a thread
    assert (await verifier.verify(sign_claims(claims(alice), key, "k1"))).user_id == ALICE
    assert len(hops) == 1


async def test_the_static_development_key_needs_no_thread(monkeypatch) -> None:
    async def no_thread(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a thread hop for a static key")

    monkeypatch.setattr(asyncio, "to_thread", no_thread)
    assert (await TokenVerifier(settings()).verify(encode_token(Principal(user_id=ALICE)))).user_id == ALICE


def _unsigned(principal: Principal) -> str:
    return jwt.encode(claims(principal), None, algorithm="none")  # type: ignore[arg-type]  # PyJWT's stubs want a key; an unsigned token is the point


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: _unsigned(Principal(user_id=ALICE)), "'none'"),
        (lambda: jwt.encode(claims(Principal(user_id=ALICE)), DEV_JWT_SECRET, algorithm="HS256"), "HS256"),
        (lambda: "not.a.jwt", "not a well-formed JWT"),
        (lambda: encode_token(Principal(user_id=ALICE), ttl=timedelta(minutes=-5)), "expired"),
        (lambda: encode_token(Principal(user_id=ALICE), audience="another-app"), "another audience"),
        (lambda: encode_token(Principal(user_id=ALICE), issuer="evil"), "issuer this service does not trust"),
        (lambda: encode_token(Principal(user_id=ALICE), ttl=timedelta(hours=5)), "longer than the 3600"),
        (lambda: sign_claims(claims(Principal(user_id=ALICE)), Ed25519PrivateKey.generate(), DEV_KEY_ID), "signature"),
        (
            lambda: sign_claims(claims(Principal(user_id=ALICE)), Ed25519PrivateKey.generate(), "other"),
            "does not publish",
        ),
        (lambda: sign_claims(claims(Principal(user_id=ALICE), admin="false"), dev_signing_key(), DEV_KEY_ID), "admin"),
        (lambda: sign_claims(claims(Principal(user_id=ALICE), admin=1), dev_signing_key(), DEV_KEY_ID), "admin"),
        (
            lambda: sign_claims(claims(Principal(user_id=ALICE), roles=[str(GROUP_A)]), dev_signing_key(), DEV_KEY_ID),
            "'roles' claim must map",
        ),
        (
            lambda: sign_claims(
                claims(Principal(user_id=ALICE), roles={str(GROUP_A): "owner"}), dev_signing_key(), DEV_KEY_ID
            ),
            "expected 'member' or 'coordinator'",
        ),
        (lambda: sign_claims(claims(Principal(user_id=ALICE), sub="nobody"), dev_signing_key(), DEV_KEY_ID), "UUID"),
        (
            lambda: sign_claims(
                {k: v for k, v in claims(Principal(user_id=ALICE)).items() if k != "jti"}, dev_signing_key(), DEV_KEY_ID
            ),
            "'jti'",
        ),
    ],
)
async def test_bad_tokens_are_refused_with_a_sentence(make, reason: str) -> None:
    with pytest.raises(Unauthenticated, match=reason) as refused:
        await TokenVerifier(settings()).verify(make())
    assert refused.value.reason.endswith(".") and "validation error" not in refused.value.reason


async def test_external_oidc_provider_tokens_carry_no_roles_of_their_own(jwks) -> None:
    provider_key = Ed25519PrivateKey.generate()
    jwks.keys = [public_jwk(provider_key, "idp-1")]
    verifier = TokenVerifier(
        settings(oidc_issuer="https://idp.example", oidc_audience="cagette-app", oidc_jwks_url=jwks.url)
    )
    now = datetime.now(UTC)
    external = {
        "iss": "https://idp.example",
        "aud": "cagette-app",
        "sub": str(ALICE),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "jti": "abc",
        "roles": {str(GROUP_A): "coordinator"},
        "admin": True,
    }
    principal = await verifier.verify(sign_claims(external, provider_key, "idp-1"))
    assert principal == Principal(user_id=ALICE, roles_in_token=False)  # roles: only the memberships known
    with pytest.raises(Unauthenticated, match="another audience"):
        await verifier.verify(sign_claims(external | {"aud": "cagette"}, provider_key, "idp-1"))


def test_roles_are_the_ones_the_service_knows_now_within_the_token() -> None:
    token_says = Principal(user_id=ALICE, roles={GROUP_A: Role.COORDINATOR, GROUP_B: Role.COORDINATOR})
    demoted = current_principal(token_says, {GROUP_A: Role.MEMBER}, trust_token_roles=True)
    assert demoted.roles == {GROUP_A: Role.MEMBER, GROUP_B: Role.COORDINATOR}
    with pytest.raises(Forbidden):
        demoted.require_coordinator(GROUP_A)
    removed = current_principal(token_says, {GROUP_A: None}, trust_token_roles=True)
    assert GROUP_A not in removed.roles
    strict = current_principal(token_says, {GROUP_A: Role.MEMBER}, trust_token_roles=False)
    assert strict.roles == {GROUP_A: Role.MEMBER}
    # The token is a ceiling: a member's token does not become a coordinator's, nor reach a
    # group it does not name.
    member_token = Principal(user_id=ALICE, roles={GROUP_A: Role.MEMBER})
    assert current_principal(
        member_token, {GROUP_A: Role.COORDINATOR, GROUP_B: Role.MEMBER}, trust_token_roles=True
    ).roles == {GROUP_A: Role.MEMBER}
    external = Principal(user_id=ALICE, roles_in_token=False)
    assert current_principal(external, {GROUP_A: Role.COORDINATOR, GROUP_B: None}, trust_token_roles=True).roles == {
        GROUP_A: Role.COORDINATOR
    }
    client = Principal(user_id=BOB, roles={GROUP_A: Role.COORDINATOR}, kind="client")
    assert current_principal(client, {GROUP_A: None}, trust_token_roles=False) == client


def test_role_checks_never_cross_groups() -> None:
    coordinator = Principal(user_id=ALICE, roles={GROUP_A: Role.COORDINATOR})
    member = Principal(user_id=BOB, roles={GROUP_A: Role.MEMBER})
    coordinator.require_coordinator(GROUP_A)
    coordinator.require_self_or_coordinator(GROUP_A, BOB)
    member.require_self_or_coordinator(GROUP_A, BOB)
    with pytest.raises(Forbidden, match="coordinator"):
        coordinator.require_coordinator(GROUP_B)
    with pytest.raises(Forbidden):
        member.require_self_or_coordinator(GROUP_A, ALICE)
    with pytest.raises(Forbidden):
        member.require_self_or_coordinator(GROUP_B, BOB)
    with pytest.raises(Forbidden, match="not a member"):
        member.require_group_member(GROUP_B)
    with pytest.raises(Forbidden, match="administrator"):
        coordinator.require_platform_admin()
    Principal(user_id=ALICE, platform_admin=True).require_coordinator(GROUP_B)


async def test_cli_mints_a_development_token_the_services_accept(capsys) -> None:
    mint_token_cli(["--user", str(ALICE), "--coordinator", str(GROUP_A), "--member", str(GROUP_B)])
    captured = capsys.readouterr()
    assert "development" in captured.err
    assert await TokenVerifier(settings()).verify(captured.out.strip()) == Principal(
        user_id=ALICE, roles={GROUP_A: Role.COORDINATOR, GROUP_B: Role.MEMBER}
    )


def test_cli_refuses_production(monkeypatch) -> None:
    monkeypatch.setenv("CAGETTE_ENV", "production")
    with pytest.raises(SystemExit):
        mint_token_cli([])


def test_production_refuses_development_defaults_naming_each_setting() -> None:
    unsafe = ServiceSettings(service_name="ledger", env="production", jwt_secret=DEV_JWT_SECRET)
    with pytest.raises(UnsafeSettings) as refused:
        unsafe.refuse_unsafe()
    message = str(refused.value)
    for setting in ("CAGETTE_JWT_SECRET", "CAGETTE_DATABASE_URL", "CAGETTE_AMQP_URL"):
        assert setting in message
    ServiceSettings(service_name="ledger").refuse_unsafe()  # development: fine
    ServiceSettings(
        service_name="ledger",
        env="production",
        database_url="postgresql+asyncpg://ledger:s3cret@db/ledger",
        amqp_url="amqp://ledger:s3cret@broker/",
    ).refuse_unsafe()


def test_secrets_come_from_files(tmp_path, monkeypatch) -> None:
    (tmp_path / "cagette_database_url").write_text("postgresql+asyncpg://ledger:from-file@db/ledger")
    monkeypatch.setenv("CAGETTE_SECRETS_DIR", str(tmp_path))
    from cagette_runtime.settings import secrets_dir

    loaded = ServiceSettings(service_name="ledger", _secrets_dir=secrets_dir())  # type: ignore[call-arg]  # pydantic-settings' init-only _secrets_dir is not in the model's signature
    assert loaded.database_url.endswith("from-file@db/ledger")
