"""Bearer JWT auth on a small app using the shared pieces, error bodies and correlation ids.
Token verification itself is in test_auth.py."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI

from cagette_contracts import Role
from cagette_runtime.auth import CurrentPrincipal, Principal, encode_token
from cagette_runtime.correlation import current_correlation_id
from cagette_runtime.http import CORRELATION_HEADER, install_common
from cagette_runtime.settings import DEV_JWT_SECRET, ServiceSettings

GROUP_A = uuid.uuid4()
ALICE, BOB = uuid.uuid4(), uuid.uuid4()


def token(principal: Principal, ttl: timedelta = timedelta(minutes=5)) -> str:
    return encode_token(principal, ttl=ttl)


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI()
    app.state.settings = ServiceSettings(service_name="test", jwt_jwks_url="")
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
            "detail": "Sign in first: the request has no bearer token (Authorization: Bearer <token>).",
        }
        assert missing.headers["WWW-Authenticate"] == "Bearer"

        legacy = jwt.encode(
            {"sub": str(ALICE), "iss": "cagette", "aud": "cagette", "exp": 9e9, "iat": 0, "jti": "x", "admin": True},
            DEV_JWT_SECRET,
            algorithm="HS256",
        )
        forged = await client.get(f"/groups/{GROUP_A}/secret", headers={"Authorization": f"Bearer {legacy}"})
        assert forged.status_code == 401
        assert "HS256" in forged.json()["detail"]

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
