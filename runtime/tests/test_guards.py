"""The HTTP guards every service shares: body size limit, security headers, one JSON error body
(500 and database refusals included), rate-limited bad tokens, masked logs."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from sqlalchemy import text

from cagette_runtime.auth import CurrentPrincipal, Principal, encode_token
from cagette_runtime.db import Database
from cagette_runtime.guards import BodySizeLimit
from cagette_runtime.http import install_common
from cagette_runtime.logs import MaskingJsonFormatter, mask_secrets
from cagette_runtime.openapi import document_errors
from cagette_runtime.settings import ServiceSettings
from cagette_runtime.testing import IsolatedServers

SECRET = "s" * 64


def make_app(database: Database | None = None, **settings: object) -> FastAPI:
    app = FastAPI()
    app.state.settings = ServiceSettings(service_name="guards", jwt_secret=SECRET, **settings)  # type: ignore[arg-type]  # the test passes setting overrides as a dict
    install_common(app, app.state.settings)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.post("/webhooks/provider")
    async def webhook(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.post("/groups/{group_id}/opening-balances")
    async def upload(group_id: str, request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"user_id": str(principal.user_id)}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug with alice@example.org inside")

    @app.get("/cast")
    async def cast(value: int) -> dict[str, int]:
        assert database is not None
        async with database.engine.connect() as connection:
            return {"value": (await connection.execute(text("SELECT CAST(:v AS bigint)"), {"v": value})).scalar_one()}

    document_errors(app)
    return app


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, raise_app_exceptions=False), base_url="http://test")


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_read() -> None:
    reads: list[object] = []

    async def app(scope, receive, send):  # the service behind the guard: must not run
        reads.append(scope)

    guard = BodySizeLimit(app, max_bytes=512 * 1024)
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        reads.append("body read")
        return {"type": "http.request", "body": b"x" * 1_000_000, "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/echo", "headers": [(b"content-length", b"1000000")]}
    await guard(scope, receive, send)
    assert reads == []
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"] == "too_large"  # type: ignore[arg-type]  # the ASGI message body is bytes at run time


async def test_body_limits_answer_413_in_json_with_the_security_headers() -> None:
    async with client_of(make_app(max_body_bytes=4096, webhook_max_body_bytes=2048)) as http:
        assert (await http.post("/echo", content=b"x" * 4096)).json() == {"received": 4096}
        over = await http.post("/echo", content=b"x" * 1_000_000)
        assert over.status_code == 413 and over.json()["error"] == "too_large"
        assert over.headers["X-Content-Type-Options"] == "nosniff"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b"x" * 1000

        streamed = await http.post("/echo", content=chunks())
        assert streamed.status_code == 413 and streamed.json()["error"] == "too_large"
        webhook = await http.post("/webhooks/provider", content=b"x" * 3000)
        assert webhook.status_code == 413


async def test_file_uploads_get_their_own_larger_limit() -> None:
    async with client_of(make_app(max_body_bytes=4096, upload_max_body_bytes=20_000)) as http:
        csv = await http.post("/groups/g1/opening-balances", content=b"x" * 10_000)
        assert csv.json() == {"received": 10_000}
        assert (await http.post("/echo", content=b"x" * 10_000)).status_code == 413
        over = await http.post("/groups/g1/opening-balances", content=b"x" * 30_000)
        assert over.status_code == 413 and "larger than 20000 bytes" in over.json()["detail"]
        # Only the upload endpoint itself, not paths that merely start like it.
        assert (await http.post("/groups/g1/opening-balances/x", content=b"x" * 10_000)).status_code == 413


async def test_every_answer_carries_the_security_headers_and_errors_are_json() -> None:
    async with client_of(make_app()) as http:
        for response in (
            await http.get("/health"),
            await http.get("/nowhere"),
            await http.delete("/echo"),
            await http.get("/boom"),
        ):
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Cache-Control"] == "no-store"
            if response.status_code >= 400:
                assert response.headers["content-type"] == "application/json"
                assert set(response.json()) >= {"error", "detail"}
        crashed = await http.get("/boom")
        assert crashed.status_code == 500 and crashed.json()["error"] == "internal"
        assert "alice" not in crashed.text


async def test_a_value_the_database_refuses_is_a_422(servers: IsolatedServers) -> None:
    database = Database(await servers.create_database("guards"))
    try:
        async with client_of(make_app(database)) as http:
            assert (await http.get("/cast", params={"value": 12})).json() == {"value": 12}
            refused = await http.get("/cast", params={"value": 2**70})
            assert refused.status_code == 422 and refused.json()["error"] == "invalid"
    finally:
        await database.dispose()


async def test_bad_tokens_are_rate_limited_per_address() -> None:
    app = make_app(auth_failure_limit=3, auth_failure_window_seconds=60)
    good = encode_token(Principal(user_id=uuid.uuid4()), SECRET)
    async with client_of(app) as http:
        assert (await http.get("/me", headers={"Authorization": f"Bearer {good}"})).status_code == 200
        for _ in range(3):
            assert (await http.get("/me", headers={"Authorization": "Bearer forged"})).status_code == 401
        limited = await http.get("/me", headers={"Authorization": f"Bearer {good}"})
        assert limited.status_code == 429 and limited.json()["error"] == "too_many_attempts"
        assert int(limited.headers["Retry-After"]) >= 1
        # A missing token is no guess: it is not counted, but the address stays limited.
        assert (await http.get("/me")).status_code == 401


async def test_the_limit_is_shared_by_replicas_through_redis() -> None:
    settings = {
        "auth_failure_limit": 2,
        "database_url": f"postgresql+asyncpg://x@127.0.0.1/guards_{uuid.uuid4().hex}",
        "rate_limit_redis_url": "redis://127.0.0.1:6379/0",
    }
    first, second = make_app(**settings), make_app(**settings)
    async with client_of(first) as one, client_of(second) as two:
        assert (await one.get("/me", headers={"Authorization": "Bearer forged"})).status_code == 401
        assert (await two.get("/me", headers={"Authorization": "Bearer forged"})).status_code == 401
        assert (await one.get("/me", headers={"Authorization": "Bearer forged"})).status_code == 429
    for app in (first, second):
        await app.state.auth_failures.close()


async def test_openapi_documents_the_error_body_on_every_status() -> None:
    async with client_of(make_app()) as http:
        document = (await http.get("/openapi.json")).json()
    me = document["paths"]["/me"]["get"]["responses"]
    assert {"401", "403", "404", "422", "429"} <= set(me)
    assert me["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_logs_never_carry_tokens_ibans_or_full_email_addresses() -> None:
    token = encode_token(Principal(user_id=uuid.uuid4()), SECRET)
    line = "sent to alice.martin@example.org, IBAN FR76 3000 6000 0112 3456 7890 189, Bearer " + token
    masked = mask_secrets(line)
    assert "alice.martin" not in masked and "a…@example.org" in masked
    assert "3000 6000" not in masked and token not in masked
    assert mask_secrets("reference RF18 5390 0754 7034") == "reference RF18 5390 0754 7034"

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingJsonFormatter("%(message)s"))
    logger = logging.getLogger("test.masking")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("bob@example.org")
        except ValueError:
            logger.exception("failed for %s", "carol@example.org")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "carol@" not in output and "bob@" not in output and "c…@example.org" in output
