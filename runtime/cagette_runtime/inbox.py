"""The inbox: which events each consumer has already processed, so a redelivered event has no
second effect. A claim is written in the transaction of the handler's effects, so the two commit
together or not at all."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Event

from .tables import inbox_messages

_CLAIM_MANY = text(
    f"INSERT INTO {inbox_messages.name} (consumer, event_id) SELECT :consumer, unnest(CAST(:ids AS uuid[]))"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)


async def claim(session: AsyncSession, consumer: str, event: Event) -> bool:
    """Record the event as processed by `consumer` in this transaction. False if it already was."""
    result = await session.execute(
        pg_insert(inbox_messages)
        .values(consumer=consumer, event_id=event.event_id)
        .on_conflict_do_nothing()
        .returning(inbox_messages.c.event_id)
    )
    return result.first() is not None


async def claim_many(session: AsyncSession, consumer: str, events: list[Event]) -> list[Event]:
    """Record the events as processed by `consumer` in this transaction (one statement); return
    those not processed before, in order, each once."""
    result = await session.execute(_CLAIM_MANY, {"consumer": consumer, "ids": [event.event_id for event in events]})
    new = {row.event_id for row in result.all()}
    claimed = []
    for event in events:
        if event.event_id in new:
            new.discard(event.event_id)
            claimed.append(event)
    return claimed
