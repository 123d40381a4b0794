"""Notifications HTTP API: a member's email preferences (reminders on or off), the delivery log
(a member's emails; a group's failed ones) and resending a failed email."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlalchemy import Select, and_, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from cagette_contracts.inputs import Flag, RequestBody
from cagette_runtime import idempotency
from cagette_runtime.auth import CurrentPrincipal
from cagette_runtime.db import OUTBOX_WRITTEN, Database
from cagette_runtime.errors import Conflict, NotFound
from cagette_runtime.http import DatabaseDep
from cagette_runtime.pagination import PAGINATED, Page, PageRequest

from .delivery import FAILED, PENDING, UNCERTAIN
from .tables import email_deliveries, member_directory, member_preferences

router = APIRouter(route_class=idempotency.IdempotentRoute, tags=["notifications"])


class EmailPreferences(RequestBody):
    """`reminders`: negative-balance reminders and digests. Receipts, payment instructions and
    payment failures are always sent and cannot be turned off."""

    reminders: Flag = True


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"  # a sender stopped mid-send: maybe received, not resent by itself


class Delivery(BaseModel):
    delivery_id: UUID
    event_id: UUID
    kind: str
    recipient: str
    subject: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None


@router.get(
    "/groups/{group_id}/members/{member_id}/email-preferences",
    summary="A member's email preferences (the member themself or a coordinator of the group)",
)
async def get_preferences(
    group_id: UUID, member_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> EmailPreferences:
    principal.require_self_or_coordinator(group_id, member_id)
    async with database.transaction() as session:
        opt_out = await session.scalar(
            select(member_preferences.c.reminders_opt_out).where(
                and_(member_preferences.c.group_id == group_id, member_preferences.c.member_id == member_id)
            )
        )
    return EmailPreferences(reminders=not opt_out)


@router.put(
    "/groups/{group_id}/members/{member_id}/email-preferences",
    summary="Turn negative-balance reminders on or off (receipts are always sent)",
)
async def put_preferences(
    group_id: UUID, member_id: UUID, preferences: EmailPreferences, principal: CurrentPrincipal, database: DatabaseDep
) -> EmailPreferences:
    principal.require_self_or_coordinator(group_id, member_id)
    values = {"reminders_opt_out": not preferences.reminders, "updated_by": principal.user_id}
    async with database.transaction() as session:
        await session.execute(
            pg_insert(member_preferences)
            .values(group_id=group_id, member_id=member_id, **values)
            .on_conflict_do_update(
                index_elements=[member_preferences.c.group_id, member_preferences.c.member_id],
                set_={**values, "updated_at": func.now()},
            )
        )
    return preferences


@router.get(
    "/groups/{group_id}/members/{member_id}/emails",
    summary="The emails sent (or pending, or failed) to a member, newest first",
    responses=PAGINATED,
)
async def list_emails(
    group_id: UUID, member_id: UUID, principal: CurrentPrincipal, database: DatabaseDep, page: Page, response: Response
) -> list[Delivery]:
    principal.require_self_or_coordinator(group_id, member_id)
    query = select(email_deliveries).where(
        and_(email_deliveries.c.group_id == group_id, email_deliveries.c.member_id == member_id)
    )
    return await _email_page(database, query, page, response)


async def _email_page(database: Database, query: Select[Any], page: PageRequest, response: Response) -> list[Delivery]:
    by_date = (email_deliveries.c.created_at, email_deliveries.c.delivery_id)
    async with database.transaction() as session:
        rows = (await session.execute(page.apply(query, *by_date, newest_first=True))).all()
    shown = page.finish(rows, lambda row: (row.created_at, row.delivery_id), response)
    return [Delivery.model_validate(row._mapping, from_attributes=False) for row in shown]


@router.get(
    "/groups/{group_id}/emails",
    summary="The group's emails in one state, e.g. ?status=failed, newest first (coordinator)",
    responses=PAGINATED,
)
async def list_group_emails(
    group_id: UUID,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    page: Page,
    response: Response,
    status: DeliveryStatus = DeliveryStatus.FAILED,
) -> list[Delivery]:
    principal.require_coordinator(group_id)
    query = select(email_deliveries).where(
        and_(email_deliveries.c.group_id == group_id, email_deliveries.c.status == status)
    )
    return await _email_page(database, query, page, response)


@router.post(
    "/groups/{group_id}/emails/{delivery_id}/retry",
    summary="Send a failed or uncertain email again, to the member's current address (coordinator)",
)
async def retry_email(
    group_id: UUID, delivery_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> Delivery:
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        row = (
            await session.execute(
                select(email_deliveries)
                .where(and_(email_deliveries.c.group_id == group_id, email_deliveries.c.delivery_id == delivery_id))
                .with_for_update()
            )
        ).first()
        if row is None:
            raise NotFound(f"no email {delivery_id} in group {group_id}")
        if row.status not in (FAILED, UNCERTAIN):
            raise Conflict(f"email {delivery_id} is {row.status}: only a failed or uncertain email can be sent again")
        recipient = row.recipient
        if row.member_id is not None:
            current = await session.scalar(
                select(member_directory.c.email).where(
                    and_(member_directory.c.group_id == group_id, member_directory.c.member_id == row.member_id)
                )
            )
            recipient = current or recipient
        if recipient != row.recipient:
            taken = (
                await session.execute(
                    select(email_deliveries.c.delivery_id).where(
                        and_(
                            email_deliveries.c.event_id == row.event_id,
                            email_deliveries.c.kind == row.kind,
                            email_deliveries.c.recipient == recipient,
                        )
                    )
                )
            ).first()
            if taken is not None:
                raise Conflict(f"this email already went to {recipient}", delivery_id=taken.delivery_id)
        updated = (
            await session.execute(
                update(email_deliveries)
                .where(email_deliveries.c.delivery_id == delivery_id)
                .values(
                    status=PENDING,
                    recipient=recipient,
                    attempts=0,
                    next_attempt_at=func.now(),
                    last_error=None,
                    failed_at=None,
                )
                .returning(*email_deliveries.c)
            )
        ).one()
        session.info[OUTBOX_WRITTEN] = True  # wakes the sender after commit
    return Delivery.model_validate(updated._mapping, from_attributes=False)
