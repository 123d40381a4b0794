"""The error body every service answers, and the OpenAPI description of it on every operation
(FastAPI would otherwise document only its own 422 body, which the services never send)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: body, query, path or header, then the field")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer has this shape."""

    error: str = Field(description="A stable code: invalid, unauthenticated, forbidden, not_found, conflict, ...")
    detail: str = Field(description="The reason, for a person")
    errors: list[FieldError] | None = Field(default=None, description="Each invalid field (422)")
    context: dict[str, Any] | None = Field(default=None, description="Figures behind the refusal, by name")


_REASONS = {
    400: "The request could not be read",
    401: "Missing, invalid or expired bearer token",
    403: "The caller's role does not allow it",
    404: "Unknown path or resource",
    409: "Conflicts with the current state; nothing was changed",
    413: "The request body is over the size limit",
    415: "Unsupported content type",
    422: "A field or parameter is invalid; nothing was changed",
    428: "This request needs an Idempotency-Key header (a retry could move money); nothing was changed",
    429: "Too many failed authentications from this address",
    503: "Something the request needs (the database, the ledger, the card provider) does not answer right now; "
    "nothing was changed, try again after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}


def _statuses(method: str, operation: dict[str, Any]) -> set[int]:
    from .idempotency import document_keys

    statuses = {400, 404, 422, 503}
    if document_keys(operation):
        statuses.add(428)
    if operation.get("security"):  # the bearer scheme: it can be missing, wrong or lack a role
        statuses |= {401, 403, 429}
    if method not in ("get", "head"):
        statuses |= {409, 413, 415}
    return statuses


def document_errors(app: FastAPI) -> None:
    """Describe in the app's OpenAPI document the error answers each operation can give, all
    with the ErrorBody schema, in place of FastAPI's own 422 body (which is never sent)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(error_schema.pop("$defs", {}))
        schemas["ErrorBody"] = error_schema
        reference = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path_item in document.get("paths", {}).values():
            for method, operation in path_item.items():
                responses = operation.setdefault("responses", {})
                if "201" in responses and "200" not in responses:
                    # An idempotent create asked again answers 200 with the original result.
                    responses["200"] = {**responses["201"], "description": "Already done: the original result"}
                for status in sorted(_statuses(method, operation)):
                    if status == 503 and "503" in responses:
                        continue  # the operation documents its own (/ready)
                    answer = responses.setdefault(str(status), {})
                    answer["description"] = _REASONS[status]
                    answer["content"] = reference
                    if status == 503:
                        answer["headers"] = RETRY_AFTER
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to replace its document
