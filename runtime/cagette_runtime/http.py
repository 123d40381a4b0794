"""What every service's HTTP side shares: correlation ids, error bodies (one JSON shape for every
error, 500 included), body size limits, security headers, /health and /ready."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from cagette_contracts.envelope import new_correlation_id

from .correlation import reset_correlation_id, set_correlation_id
from .db import Database, as_retry_later
from .errors import Refused, RetryLater
from .guards import SECURITY_HEADERS, BodySizeLimit, SecurityHeaders
from .ratelimit import FailureLimiter
from .settings import ServiceSettings

if TYPE_CHECKING:
    from .service import Service

CORRELATION_HEADER = "X-Correlation-ID"
log = logging.getLogger(__name__)


def service_database(request: Request) -> Database:
    service: Service = request.app.state.service
    return service.database


# The service's database, for an endpoint: `async def get(..., database: DatabaseDep)`.
DatabaseDep = Annotated[Database, Depends(service_database)]


class CorrelationIdMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        incoming = request.headers.get(CORRELATION_HEADER, "")
        valid = 0 < len(incoming) <= 128 and all(c.isalnum() or c in "._:-" for c in incoming)
        correlation_id = incoming if valid else new_correlation_id()
        token = set_correlation_id(correlation_id)
        try:
            response = await call_next(request)
        finally:
            reset_correlation_id(token)
        response.headers[CORRELATION_HEADER] = correlation_id
        return response


def _error_body(code: str, detail: str, **extra: object) -> dict[str, object]:
    return {"error": code, "detail": detail, **{k: v for k, v in extra.items() if v is not None}}


def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    headers: dict[str, str] = {}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    body = _error_body(exc.code, exc.reason, context=exc.details or None)
    return JSONResponse(status_code=exc.status_code, content=_jsonable(body), headers=headers or None)


def _retry_later(exc: RetryLater) -> JSONResponse:
    body = _error_body(exc.code, exc.reason, context=exc.details or None)
    return JSONResponse(
        status_code=exc.status_code, content=_jsonable(body), headers={"Retry-After": str(exc.retry_after)}
    )


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A RetryLater, or an outage of what the request needed (the database unreachable, a
    connection lost or timed out): 503 with Retry-After; its transaction changed nothing."""
    transient = as_retry_later(exc)
    if transient is None:
        log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
        return _server_error(request, exc)
    if transient is not exc:
        log.warning("%s %s: %s (%s: %s)", request.method, request.url.path, transient.reason, type(exc).__name__, exc)
    return _retry_later(transient)


def _jsonable(value: object) -> object:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)


def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}
        for error in exc.errors()
    ]
    named = ", ".join(".".join(str(part) for part in error["loc"][1:] or error["loc"]) for error in errors[:5])
    detail = f"request is not valid: {named}" if named else "request is not valid"
    return JSONResponse(status_code=422, content=_jsonable(_error_body("invalid", detail, errors=errors)))


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large", 415: "unsupported"}


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (unknown path, wrong method, unparsable body) in the same shape."""
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "invalid" if exc.status_code < 500 else "internal")
    return JSONResponse(
        status_code=exc.status_code,
        content=_error_body(code, str(exc.detail)),
        headers=dict(exc.headers) if exc.headers else None,
    )


def _database_refused(request: Request, exc: Exception) -> JSONResponse:
    """Safety net: a value the database cannot take (SQLSTATE class 22: out of range, an
    unencodable character, a bad date) was let through by the request models; its transaction
    changed nothing, so it is the client's 422. The database unreachable, a lost connection or a
    lost race is a 503 (try again); any other database error is a server error."""
    assert isinstance(exc, DBAPIError)
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
    if not sqlstate.startswith("22"):
        return _unavailable(request, exc)
    log.warning("database refused a value from the request (SQLSTATE %s)", sqlstate)
    return JSONResponse(
        status_code=422, content=_error_body("invalid", "a value in the request is out of range or not acceptable")
    )


def _server_error(request: Request, exc: Exception) -> JSONResponse:
    # Answered outside the other middlewares: carries its own headers.
    if (transient := as_retry_later(exc)) is not None:
        response = _retry_later(transient)
        response.headers.update(dict(SECURITY_HEADERS))
        return response
    return JSONResponse(
        status_code=500,
        content=_error_body("internal", "internal error; nothing was changed, try again later"),
        headers=dict(SECURITY_HEADERS),
    )


# Paths whose bodies get their own limit (regular expressions matched at the path's start).
WEBHOOK_PATHS = r"/webhooks/"
UPLOAD_PATHS = r"/groups/[^/]+/(opening-balances|bank-statements)$"


def install_common(app: FastAPI, settings: ServiceSettings | None = None) -> None:
    settings = settings or ServiceSettings()
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        limits={
            WEBHOOK_PATHS: settings.webhook_max_body_bytes,
            UPLOAD_PATHS: settings.upload_max_body_bytes,
        },
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(CorrelationIdMiddleware)
    app.add_exception_handler(Refused, _refused)
    # Outages: answered 503 + Retry-After here, not left to the last-resort 500 (which logs a
    # traceback for each request while the database is down).
    for outage in (RetryLater, ConnectionError, TimeoutError, OSError, PoolTimeout):
        app.add_exception_handler(outage, _unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_refused)
    app.add_exception_handler(Exception, _server_error)
    app.include_router(health_router)
    app.state.auth_failures = FailureLimiter(
        namespace=f"{settings.service_name}:{make_url(settings.database_url).database}",
        limit=settings.auth_failure_limit,
        window=settings.auth_failure_window_seconds,
        redis_url=settings.rate_limit_redis_url,
    )


health_router = APIRouter(tags=["operations"])


@health_router.get("/health", summary="Liveness: the process answers")
async def health(request: Request) -> dict[str, str]:
    return {"status": "ok", "service": request.app.state.settings.service_name}


@health_router.get("/asyncapi.json", summary="AsyncAPI 3.1 document: the events this service publishes and consumes")
async def asyncapi(request: Request) -> dict[str, object]:
    from .asyncapi import asyncapi_document

    service: Service = request.app.state.service
    consumed = {c.queue.name: c.queue.routing_keys for c in service.consumers}
    return asyncapi_document(service.name, consumed, amqp_url=service.settings.amqp_url)


@health_router.get(
    "/ready",
    summary="Readiness: database and broker reachable",
    responses={503: {"description": "The database or the broker does not answer"}},
)
async def ready(request: Request) -> JSONResponse:
    service: Service = request.app.state.service
    checks = await service.readiness()
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse(
        status_code=200 if ok else 503,
        content={"status": "ready" if ok else "not ready", "service": service.name, "checks": checks},
    )
