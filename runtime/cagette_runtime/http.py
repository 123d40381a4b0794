"""What every service's HTTP side shares: correlation ids, error bodies, /health and /ready."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from cagette_contracts.envelope import new_correlation_id

from .correlation import reset_correlation_id, set_correlation_id
from .db import Database
from .errors import Refused

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


def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    body = {"error": exc.code, "detail": exc.reason, **({"context": exc.details} if exc.details else {})}
    return JSONResponse(status_code=exc.status_code, content=_jsonable(body), headers=headers)


def _jsonable(value: object) -> object:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)


def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{k: v for k, v in error.items() if k in ("loc", "msg", "type")} for error in exc.errors()]
    return JSONResponse(
        status_code=422, content=_jsonable({"error": "invalid", "detail": "request is not valid", "errors": errors})
    )


def install_common(app: FastAPI) -> None:
    app.add_middleware(CorrelationIdMiddleware)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(health_router)


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


@health_router.get("/ready", summary="Readiness: database and broker reachable")
async def ready(request: Request) -> JSONResponse:
    service: Service = request.app.state.service
    checks = await service.readiness()
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse(
        status_code=200 if ok else 503,
        content={"status": "ready" if ok else "not ready", "service": service.name, "checks": checks},
    )
