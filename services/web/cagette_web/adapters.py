"""The other services, as the pages call them: over HTTP, always with the signed-in person's
short-lived token, so every service authorizes the person itself (web grants nothing).

One connection pool per service for the process (created at start, closed at stop). An answer
of 4xx becomes `ServiceRefused` with the service's reason (`{error, detail, errors}`); a 5xx, a
timeout or a refused connection becomes `ServiceUnavailable`: the page tells the person, in
their language, instead of failing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from cagette_runtime.correlation import current_correlation_id
from cagette_runtime.http import CORRELATION_HEADER
from cagette_runtime.idempotency import HEADER as IDEMPOTENCY_HEADER

from .settings import WebSettings

log = logging.getLogger(__name__)

ServiceName = Literal["orders", "ledger", "payments", "notifications"]
QueryValue = str | int | list[str] | None


class ServiceRefused(Exception):
    """The service answered 4xx: what the person asked is refused, with the service's reason."""

    def __init__(
        self,
        service: str,
        status_code: int,
        code: str,
        detail: str,
        errors: list[Any],
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{service} refused ({status_code} {code}): {detail}")
        self.service = service
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.errors = errors
        # What the service says about the refusal beyond words (e.g. the money pot's `available`).
        # The refusal's `context` (e.g. a CSV's errors by line: `{"errors": [...], "more_errors": n}`).
        self.context: Mapping[str, Any] = context or {}


class ServiceUnavailable(Exception):
    """The service did not answer usefully (5xx, timeout, connection refused)."""

    def __init__(self, service: str, why: str) -> None:
        super().__init__(f"{service} unavailable: {why}")
        self.service = service


@dataclass(frozen=True)
class Answer:
    """A successful answer: its JSON (or raw bytes for CSV and images) and the headers pages use."""

    status_code: int
    body: Any
    content: bytes
    headers: Mapping[str, str]

    @property
    def next_cursor(self) -> str | None:
        return self.headers.get("x-next-cursor")

    @property
    def total_count(self) -> int | None:
        value = self.headers.get("x-total-count", "")
        return int(value) if value.isascii() and value.isdigit() else None


def _refusal(service: str, response: httpx.Response) -> ServiceRefused:
    code, detail = "refused", response.reason_phrase
    errors: list[Any] = []
    context: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("error") or code)
        detail = str(body.get("detail") or detail)
        listed = body.get("errors")
        errors = listed if isinstance(listed, list) else []
        found = body.get("context")
        context = found if isinstance(found, dict) else {}
    return ServiceRefused(service, response.status_code, code, detail, errors, context)


@dataclass
class ServiceApis:
    """The process's connection pools to the four services."""

    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: WebSettings) -> ServiceApis:
        urls = {
            "orders": settings.web_orders_url,
            "ledger": settings.web_ledger_url,
            "payments": settings.web_payments_url,
            "notifications": settings.web_notifications_url,
        }
        timeout = httpx.Timeout(settings.web_service_timeout_seconds)
        return cls({name: httpx.AsyncClient(base_url=url, timeout=timeout) for name, url in urls.items()})

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    def as_person(self, access_token: str, form_key: str | None = None) -> PersonApis:
        return PersonApis(self, access_token, form_key)


@dataclass(frozen=True)
class PersonApis:
    """The services as one signed-in person sees them."""

    apis: ServiceApis
    access_token: str
    # The submitted form's `client_key` (rendered in the form once, so a double submit or a
    # browser retry sends it again): each state-changing call of the submission derives its
    # Idempotency-Key from it, in order (`<form key>.0`, `.1`, ...); without one (a link, a form
    # without the field) each call gets a new key.
    form_key: str | None = None
    _calls: list[int] = field(default_factory=lambda: [0], compare=False, repr=False)

    def idempotency_key(self) -> str:
        number = self._calls[0]
        self._calls[0] += 1
        return f"{self.form_key}.{number}" if self.form_key else f"web-{uuid.uuid4().hex}"

    async def call(
        self,
        service: ServiceName,
        method: str,
        path: str,
        *,
        params: Mapping[str, QueryValue] | None = None,
        json: Any = None,
        content: bytes | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        request_headers = {
            "Authorization": f"Bearer {self.access_token}",
            CORRELATION_HEADER: current_correlation_id(),
            **(headers or {}),
        }
        if method not in ("GET", "HEAD") and IDEMPOTENCY_HEADER not in request_headers:
            request_headers[IDEMPOTENCY_HEADER] = self.idempotency_key()
        query = {key: value for key, value in (params or {}).items() if value not in (None, "")}
        try:
            response = await self.apis.clients[service].request(
                method, path, params=query, json=json, content=content, files=files, headers=request_headers
            )
        except httpx.HTTPError as exc:
            log.warning("%s unreachable for %s %s: %s", service, method, path, type(exc).__name__)
            raise ServiceUnavailable(service, type(exc).__name__) from None
        if response.status_code >= 500:
            log.warning("%s answered %s for %s %s", service, response.status_code, method, path)
            raise ServiceUnavailable(service, f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise _refusal(service, response)
        is_json = response.headers.get("content-type", "").startswith("application/json")
        body = response.json() if is_json and response.content else None
        return Answer(response.status_code, body, response.content, response.headers)

    async def get(self, service: ServiceName, path: str, **params: QueryValue) -> Any:
        return (await self.call(service, "GET", path, params=params)).body

    async def pages(
        self, service: ServiceName, path: str, *, limit: int = 200, **params: QueryValue
    ) -> AsyncIterator[Answer]:
        """Every page of a paginated answer, following `X-Next-Cursor`."""
        cursor: str | None = None
        while True:
            answer = await self.call(service, "GET", path, params={**params, "limit": limit, "cursor": cursor})
            yield answer
            cursor = answer.next_cursor
            if not cursor:
                return

    async def get_all(self, service: ServiceName, path: str, *, limit: int = 200, **params: QueryValue) -> list[Any]:
        """Every row of a paginated list, for pages that show a whole set (a group's members, a
        member's orders and payments)."""
        return [row async for answer in self.pages(service, path, limit=limit, **params) for row in answer.body or []]

    async def post(self, service: ServiceName, path: str, json: Any = None, **kwargs: Any) -> Any:
        return (await self.call(service, "POST", path, json=json, **kwargs)).body

    async def put(self, service: ServiceName, path: str, json: Any = None, **kwargs: Any) -> Any:
        return (await self.call(service, "PUT", path, json=json, **kwargs)).body

    async def patch(self, service: ServiceName, path: str, json: Any = None, **kwargs: Any) -> Any:
        return (await self.call(service, "PATCH", path, json=json, **kwargs)).body

    async def delete(self, service: ServiceName, path: str, **kwargs: Any) -> Any:
        return (await self.call(service, "DELETE", path, **kwargs)).body
