"""Events in: orders' members become accounts (and invitations), memberships give the roles of
the next tokens, a removal ends the person's sessions."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import MemberJoined, MemberLeft, MemberUpdated
from cagette_runtime.consumer import Consumer
from cagette_runtime.memberships import MEMBER_EVENTS

from . import usecases
from .settings import WebSettings

MEMBERS_QUEUE = "web.members"


def consumers(settings: WebSettings) -> list[Consumer]:
    async def handle(session: AsyncSession, event: MemberJoined | MemberUpdated | MemberLeft) -> None:
        await usecases.on_member_event(session, settings, event)

    return [Consumer(MEMBERS_QUEUE, dict.fromkeys(MEMBER_EVENTS, handle), delivery_limit=settings.delivery_limit)]
