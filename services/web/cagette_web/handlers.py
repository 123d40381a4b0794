"""Events in: orders' members become accounts (and invitations), memberships give the roles of
the next tokens, a removal ends the person's sessions."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Event
from cagette_runtime.consumer import Consumer
from cagette_runtime.memberships import MEMBER_EVENTS
from cagette_runtime.topology import ConsumerQueue

from . import usecases
from .settings import WebSettings

MEMBERS_QUEUE = "web.members"


def consumers(settings: WebSettings) -> list[Consumer]:
    async def handle(session: AsyncSession, event: Event) -> None:
        assert isinstance(event, MEMBER_EVENTS)
        await usecases.on_member_event(session, settings, event)

    queue = ConsumerQueue(
        MEMBERS_QUEUE,
        tuple(cls.routing_key() for cls in MEMBER_EVENTS),
        delivery_limit=settings.delivery_limit,
    )
    return [Consumer(queue, handle, accepts=MEMBER_EVENTS)]
