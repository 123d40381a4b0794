"""HTTP API of the outbound webhooks: register an endpoint, read its delivery log, replay,
enable again (see webhooks.py). A group's endpoints are a coordinator's (or a platform
administrator's); an endpoint for every group (no group_id) is a platform administrator's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit
from uuid import UUID, uuid4

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, EmailStr, Field, StringConstraints
from sqlalchemy import Row, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Language
from cagette_runtime import idempotency
from cagette_runtime.auth import CurrentPrincipal, Principal
from cagette_runtime.db import OUTBOX_WRITTEN
from cagette_runtime.errors import Invalid, NotFound
from cagette_runtime.http import DatabaseDep
from cagette_runtime.pagination import PAGINATED, Page

from .tables import webhook_deliveries, webhook_endpoints
from .webhooks import EVENT_TYPE_PATTERN, FAILED, PENDING, new_secret, sync_bindings

router = APIRouter(route_class=idempotency.IdempotentRoute, prefix="/webhooks", tags=["webhooks"])
DeliveryState = Literal["pending", "delivered", "failed"]  # webhooks.PENDING, DELIVERED, FAILED

EventTypePattern = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=EVENT_TYPE_PATTERN.pattern)]


class NewEndpoint(BaseModel):
    group_id: UUID | None = Field(default=None, description="The group whose events it gets; none: every group's")
    url: Annotated[str, StringConstraints(min_length=9, max_length=2000)] = Field(
        description="HTTPS URL the events are POSTed to"
    )
    event_types: list[EventTypePattern] = Field(
        min_length=1, max_length=50, description="Event types or topic patterns, e.g. ledger.# or payments.payment.*"
    )
    owner_email: EmailStr | None = Field(
        default=None,
        description="Platform endpoints (no group_id) only, and required for them: the address emailed when the "
        "endpoint is disabled (a group's endpoint tells the group's coordinators)",
    )
    owner_language: Language | None = Field(
        default=None, description="Platform endpoints only: the language of that email (fr, the default, or en)"
    )


class Endpoint(BaseModel):
    endpoint_id: UUID
    group_id: UUID | None
    url: str
    event_types: list[str]
    enabled: bool
    created_at: datetime
    failing_since: datetime | None
    last_success_at: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    owner_email: str | None = Field(description="Told when a platform endpoint is disabled (none for a group's)")
    owner_language: Language


class CreatedEndpoint(Endpoint):
    secret: str = Field(description="Standard Webhooks signing secret (whsec_...): shown once, keep it")


class WebhookDelivery(BaseModel):
    delivery_id: UUID
    event_id: UUID
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None


class Replay(BaseModel):
    since: datetime = Field(description="Deliveries created at or after this time are sent again")


class Replayed(BaseModel):
    replayed: int


def _check_url(url: str, allow_http: bool) -> None:
    if any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise Invalid("the URL must not contain spaces or control characters")
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise Invalid("the URL must be an https:// URL with a host")
    if parts.username or parts.password:
        raise Invalid("the URL must not carry credentials: deliveries are signed instead")


def _check_owner(body: NewEndpoint) -> None:
    if body.group_id is None and body.owner_email is None:
        raise Invalid("a platform endpoint needs an owner_email: the address told when the endpoint is disabled")
    if body.group_id is not None and (body.owner_email is not None or body.owner_language is not None):
        raise Invalid(
            "owner_email and owner_language are for platform endpoints: a group's endpoint tells the group's "
            "coordinators when it is disabled"
        )


def _authorize(principal: Principal, group_id: UUID | None) -> None:
    if group_id is None:
        principal.require_platform_admin()
    else:
        principal.require_coordinator(group_id)


async def _endpoint(session: AsyncSession, principal: Principal, endpoint_id: UUID) -> Row:
    row = (
        await session.execute(select(webhook_endpoints).where(webhook_endpoints.c.endpoint_id == endpoint_id))
    ).first()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    _authorize(principal, row.group_id)
    return row


def _shown(row: Row) -> Endpoint:
    return Endpoint.model_validate(row._mapping, from_attributes=False)


@router.post("/endpoints", status_code=201, summary="Register an HTTPS endpoint for some event types")
async def create_endpoint(
    body: NewEndpoint, principal: CurrentPrincipal, request: Request, database: DatabaseDep
) -> CreatedEndpoint:
    _authorize(principal, body.group_id)
    _check_url(body.url, request.app.state.settings.webhook_allow_http)
    _check_owner(body)
    secret = new_secret()
    async with database.transaction() as session:
        row = (
            await session.execute(
                webhook_endpoints.insert()
                .values(
                    endpoint_id=uuid4(),
                    group_id=body.group_id,
                    url=body.url,
                    event_types=sorted(set(body.event_types)),
                    secret=secret,
                    created_by=principal.user_id,
                    owner_email=body.owner_email,
                    owner_language=(body.owner_language or Language.FR).value,
                )
                .returning(webhook_endpoints)
            )
        ).one()
        await sync_bindings(session, request.app.state.service.broker)
    return CreatedEndpoint(**_shown(row).model_dump(), secret=secret)


@router.get("/endpoints", summary="The endpoints of a group (coordinator), or the platform's (administrator)")
async def list_endpoints(
    principal: CurrentPrincipal, database: DatabaseDep, group_id: UUID | None = None
) -> list[Endpoint]:
    _authorize(principal, group_id)
    where = webhook_endpoints.c.group_id.is_(None) if group_id is None else webhook_endpoints.c.group_id == group_id
    async with database.transaction() as session:
        rows = (await session.execute(select(webhook_endpoints).where(where).order_by("created_at"))).all()
    return [_shown(row) for row in rows]


@router.get(
    "/endpoints/{endpoint_id}/deliveries", summary="The delivery log of an endpoint, newest first", responses=PAGINATED
)
async def list_deliveries(
    endpoint_id: UUID,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    page: Page,
    response: Response,
    status: DeliveryState | None = None,
) -> list[WebhookDelivery]:
    async with database.transaction() as session:
        await _endpoint(session, principal, endpoint_id)
        query = select(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id)
        if status is not None:
            query = query.where(webhook_deliveries.c.status == status)
        by_date = (webhook_deliveries.c.created_at, webhook_deliveries.c.delivery_id)
        rows = (await session.execute(page.apply(query, *by_date, newest_first=True))).all()
    shown = page.finish(rows, lambda row: (row.created_at, row.delivery_id), response)
    return [WebhookDelivery.model_validate(row._mapping, from_attributes=False) for row in shown]


@router.post("/endpoints/{endpoint_id}/replay", summary="Send again every delivery created since a time")
async def replay(endpoint_id: UUID, body: Replay, principal: CurrentPrincipal, database: DatabaseDep) -> Replayed:
    async with database.transaction() as session:
        await _endpoint(session, principal, endpoint_id)
        result = await session.execute(
            update(webhook_deliveries)
            .where(and_(webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.created_at >= body.since))
            .values(status=PENDING, next_attempt_at=func.now(), window_started_at=func.now())
            .returning(webhook_deliveries.c.delivery_id)
        )
        count = len(result.all())
        session.info[OUTBOX_WRITTEN] = True  # wakes the sender
    return Replayed(replayed=count)


@router.post("/endpoints/{endpoint_id}/deliveries/{delivery_id}/replay", summary="Send one delivery again")
async def replay_one(
    endpoint_id: UUID, delivery_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> WebhookDelivery:
    async with database.transaction() as session:
        await _endpoint(session, principal, endpoint_id)
        row = (
            await session.execute(
                update(webhook_deliveries)
                .where(
                    and_(
                        webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.delivery_id == delivery_id
                    )
                )
                .values(status=PENDING, next_attempt_at=func.now(), window_started_at=func.now())
                .returning(webhook_deliveries)
            )
        ).first()
        if row is None:
            raise NotFound(f"no delivery {delivery_id} for endpoint {endpoint_id}")
        session.info[OUTBOX_WRITTEN] = True
    return WebhookDelivery.model_validate(row._mapping, from_attributes=False)


@router.post(
    "/endpoints/{endpoint_id}/enable", summary="Enable a disabled endpoint again (its failed deliveries resume)"
)
async def enable(endpoint_id: UUID, principal: CurrentPrincipal, request: Request, database: DatabaseDep) -> Endpoint:
    async with database.transaction() as session:
        await _endpoint(session, principal, endpoint_id)
        row = (
            await session.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.endpoint_id == endpoint_id)
                .values(enabled=True, failing_since=None, disabled_at=None, disabled_reason=None)
                .returning(webhook_endpoints)
            )
        ).one()
        await session.execute(
            update(webhook_deliveries)
            .where(and_(webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.status == FAILED))
            .values(status=PENDING, next_attempt_at=func.now(), window_started_at=func.now())
        )
        await sync_bindings(session, request.app.state.service.broker)
        session.info[OUTBOX_WRITTEN] = True
    return _shown(row)
