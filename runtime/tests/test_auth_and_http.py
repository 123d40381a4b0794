"""Bearer JWT auth, error bodies and correlation ids, on a small app using the shared pieces."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI

from cagette_contracts import Role
from cagette_runtime.auth import CurrentPrincipal, Principal, decode_token, encode_token, mint_token_cli
from cagette_runtime.correlation import current_correlation_id
from cagette_runtime.errors import Forbidden, Unauthenticated
from cagette_runtime.http import CORRELATION_HEADER, install_common
from cagette_runtime.settings import ServiceSettings

SECRET = "x" * 64
GROUP_A, GROUP_B = uuid.uuid4(), uuid.uuid4()
ALICE, BOB = uuid.uuid4(), uuid.uuid4()


def token(principal: Principal, secret: str = SECRET, ttl: timedelta = timedelta(minutes=5)) -> str:
    return encode_token(principal, secret, ttl=ttl)


def test_round_trip_keeps_user_roles_and_admin_flag() -> None:
    principal = Principal(user_id=ALICE, roles={GROUP_A: Role.COORDINATOR, GROUP_B: Role.MEMBER}, platform_admin=True)
    assert decode_token(token(principal), SECRET) == principal


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: token(Principal(user_id=ALICE), secret="y" * 64), "invalid bearer token"),
        (lambda: token(Principal(user_id=ALICE), ttl=timedelta(seconds=-1)), "expired"),
        (lambda: "not.a.jwt", "invalid bearer token"),
        (lambda: jwt.encode({"sub": str(ALICE), "iss": "cagette"}, SECRET, algorithm="HS256"), "exp"),
        (lambda: jwt.encode({"sub": str(ALICE), "iss": "cagette", "exp": 9e9}, SECRET, algorithm="HS384"), "invalid"),
        (lambda: jwt.encode({"sub": "nobody", "iss": "cagette", "exp": 9e9}, SECRET, algorithm="HS256"), "invalid"),
        (lambda: jwt.encode({"sub": str(ALICE), "iss": "evil", "exp": 9e9}, SECRET, algorithm="HS256"), "issuer"),
    ],
)
def test_bad_tokens_are_refused(make, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message):
        decode_token(make(), SECRET)


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


def test_cli_mints_a_token_the_services_accept(capsys, monkeypatch) -> None:
    monkeypatch.setenv("CAGETTE_JWT_SECRET", SECRET)
    mint_token_cli(["--user", str(ALICE), "--coordinator", str(GROUP_A), "--member", str(GROUP_B)])
    printed = capsys.readouterr().out.strip()
    assert decode_token(printed, SECRET) == Principal(
        user_id=ALICE, roles={GROUP_A: Role.COORDINATOR, GROUP_B: Role.MEMBER}
    )


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI()
    app.state.settings = ServiceSettings(service_name="test", jwt_secret=SECRET)
    install_common(app)

    @app.get("/groups/{group_id}/secret")
    async def secret(group_id: uuid.UUID, principal: CurrentPrincipal) -> dict[str, str]:
        principal.require_coordinator(group_id)
        return {"correlation_id": current_correlation_id()}

    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


async def test_http_answers_401_403_and_200_with_reasons(client: httpx.AsyncClient) -> None:
    async with client:
        missing = await client.get(f"/groups/{GROUP_A}/secret")
        assert missing.status_code == 401
        assert missing.json() == {
            "error": "unauthenticated",
            "detail": "missing bearer token (Authorization: Bearer <jwt>)",
        }
        assert missing.headers["WWW-Authenticate"] == "Bearer"

        forged = await client.get(
            f"/groups/{GROUP_A}/secret",
            headers={"Authorization": f"Bearer {token(Principal(user_id=ALICE), 'z' * 64)}"},
        )
        assert forged.status_code == 401

        member = {"Authorization": f"Bearer {token(Principal(user_id=BOB, roles={GROUP_A: Role.MEMBER}))}"}
        forbidden = await client.get(f"/groups/{GROUP_A}/secret", headers=member)
        assert forbidden.status_code == 403
        assert "coordinator" in forbidden.json()["detail"]

        coordinator = {"Authorization": f"Bearer {token(Principal(user_id=ALICE, roles={GROUP_A: Role.COORDINATOR}))}"}
        ok = await client.get(f"/groups/{GROUP_A}/secret", headers=coordinator | {CORRELATION_HEADER: "trace-123"})
        assert ok.status_code == 200
        assert ok.json() == {"correlation_id": "trace-123"}
        assert ok.headers[CORRELATION_HEADER] == "trace-123"

        bad_path = await client.get("/groups/not-a-uuid/secret", headers=coordinator)
        assert bad_path.status_code == 422
        assert bad_path.json()["errors"][0]["loc"] == ["path", "group_id"]

        generated = await client.get(
            f"/groups/{GROUP_A}/secret", headers=coordinator | {CORRELATION_HEADER: "bad id with spaces"}
        )
        assert generated.headers[CORRELATION_HEADER] != "bad id with spaces"
        assert len(generated.headers[CORRELATION_HEADER]) == 32
