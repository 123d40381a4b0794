"""Notifications HTTP API: a member's email preferences (reminders on or off) and, for
coordinators, what was sent to a member (the delivery log)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from cagette_runtime.auth import CurrentPrincipal
from cagette_runtime.db import Database

from .tables import email_deliveries, member_preferences

router = APIRouter(tags=["notifications"])


class EmailPreferences(BaseModel):
    """`reminders`: negative-balance reminders and digests. Receipts, payment instructions and
    payment failures are always sent and cannot be turned off."""

    reminders: bool = True


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


def _database(request: Request) -> Database:
    return request.app.state.service.database


@router.get(
    "/groups/{group_id}/members/{member_id}/email-preferences",
    summary="A member's email preferences (the member themself or a coordinator of the group)",
)
async def get_preferences(group_id: UUID, member_id: UUID, principal: CurrentPrincipal, request: Request) -> EmailPreferences:
    principal.require_self_or_coordinator(group_id, member_id)
    async with _database(request).transaction() as session:
        opt_out = (
            await session.execute(
                select(member_preferences.c.reminders_opt_out).where(
                    and_(member_preferences.c.group_id == group_id, member_preferences.c.member_id == member_id)
                )
            )
        ).scalar()
    return EmailPreferences(reminders=not opt_out)


@router.put(
    "/groups/{group_id}/members/{member_id}/email-preferences",
    summary="Turn negative-balance reminders on or off (receipts are always sent)",
)
async def put_preferences(
    group_id: UUID, member_id: UUID, preferences: EmailPreferences, principal: CurrentPrincipal, request: Request
) -> EmailPreferences:
    principal.require_self_or_coordinator(group_id, member_id)
    values = {"reminders_opt_out": not preferences.reminders, "updated_by": principal.user_id}
    async with _database(request).transaction() as session:
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
)
async def list_emails(
    group_id: UUID, member_id: UUID, principal: CurrentPrincipal, request: Request, limit: int = 50
) -> list[Delivery]:
    principal.require_self_or_coordinator(group_id, member_id)
    async with _database(request).transaction() as session:
        rows = (
            await session.execute(
                select(email_deliveries)
                .where(and_(email_deliveries.c.group_id == group_id, email_deliveries.c.member_id == member_id))
                .order_by(email_deliveries.c.created_at.desc())
                .limit(max(1, min(limit, 500)))
            )
        ).all()
    return [Delivery.model_validate(row._mapping, from_attributes=False) for row in rows]
