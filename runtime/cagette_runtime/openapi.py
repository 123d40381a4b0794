"""The error body every service answers, and the OpenAPI description of it on every operation
(FastAPI would otherwise document only its own 422 body, which the services never send)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.utils import create_model_field
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
    429: "Too many failed authentications from this address",
}


def _needs_auth(dependant: Dependant, authenticate: object) -> bool:
    return any(d.call is authenticate or _needs_auth(d, authenticate) for d in dependant.dependencies)


def _statuses(route: APIRoute) -> set[int]:
    from .auth import authenticate

    statuses = {400, 404, 422}
    if _needs_auth(route.dependant, authenticate):
        statuses |= {401, 403, 429}
    if (route.methods or set()) - {"GET", "HEAD"}:
        statuses |= {409, 413, 415}
    return statuses


def document_errors(app: FastAPI) -> None:
    """Add the statuses each operation can answer, with the ErrorBody schema, to its OpenAPI."""
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        for status in sorted(_statuses(route)):
            documented = route.responses.setdefault(status, {})
            documented.setdefault("description", _REASONS[status])
            if "model" not in documented and "content" not in documented:
                documented["model"] = ErrorBody
                # FastAPI reads a response's model into a field when the route is built.
                route.response_fields[status] = create_model_field(
                    name=f"Response_{status}_{route.unique_id}", type_=ErrorBody, mode="serialization"
                )
