"""The delivery log: an email outbox keyed by (event_id, recipient, kind).

`enqueue` runs in the consuming transaction: the rendered email is stored as 'pending' if and only
if the event's effects commit, and a second insert of the same key does nothing, so a redelivered
event never yields a second email. The sender task (sender.py) claims due rows in a short
transaction, talks SMTP outside any transaction, then records the outcome (and the operator event
through the outbox) in another short transaction.

At most once per row: claiming commits the row as 'sending' before SMTP is spoken, and only the
sender that holds it moves it on ('sent', back to 'pending' when the server refused it for now,
'failed'). A row still 'sending' when its lease ends belongs to a sender that died mid-send: it
may or may not have reached the server, so it becomes 'uncertain' and is never sent again by
itself (a coordinator can send it again: `POST .../emails/{id}/retry`). Its Message-ID is fixed
per row, so even that resend can be recognised by the receiving server.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

from sqlalchemy import ColumnElement, Row, and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import EmailFailed, EmailSent
from cagette_runtime import clock, outbox
from cagette_runtime.correlation import current_correlation_id
from cagette_runtime.db import OUTBOX_WRITTEN
from cagette_runtime.rows import record

from .domain import Email
from .rendering import render
from .tables import email_deliveries

PENDING, SENDING, SENT, FAILED, UNCERTAIN = "pending", "sending", "sent", "failed", "uncertain"
# Why an interrupted send is not retried, as operators and coordinators read it.
INTERRUPTED = "the sender stopped during the send: it may have reached the server, so it is not sent again by itself"


def message_id_for(delivery_id: UUID, domain: str) -> str:
    """A Message-ID fixed per delivery: if a crash makes us send twice, clients can tell."""
    return f"<{delivery_id}@{domain}>"


async def enqueue(session: AsyncSession, emails: list[Email], *, sender_domain: str, timezone: str) -> int:
    """Store the emails as pending deliveries (idempotent per key). Returns how many are new."""
    created = 0
    for email in emails:
        rendered = render(email, timezone=timezone)
        delivery_id = uuid4()
        result = await session.execute(
            pg_insert(email_deliveries)
            .values(
                delivery_id=delivery_id,
                event_id=email.source_event_id,
                recipient=email.recipient,
                kind=email.kind.value,
                group_id=email.group.group_id,
                member_id=email.member.member_id,
                language=email.language,
                subject=rendered.subject,
                text_body=rendered.text,
                html_body=rendered.html,
                epc_payload=email.epc_payload,
                message_id=message_id_for(delivery_id, sender_domain),
                correlation_id=current_correlation_id(),
            )
            .on_conflict_do_nothing(constraint="email_deliveries_once")
            .returning(email_deliveries.c.delivery_id)
        )
        if result.first() is not None:
            created += 1
    if created:
        # Wakes the sender after commit through the database's commit callbacks (the outbox
        # relay's wake-up is harmless: the delivery log is this service's outbox for emails).
        session.info[OUTBOX_WRITTEN] = True
    return created


@dataclass(frozen=True)
class Claimed:
    """A delivery taken by a sender; its outcome events (EmailSent, EmailFailed) carry its fields
    of the same names."""

    delivery_id: UUID
    source_event_id: UUID  # the event the email is about (the row's event_id)
    recipient: str
    kind: str
    group_id: UUID
    member_id: UUID | None
    subject: str
    text_body: str
    html_body: str
    message_id: str
    correlation_id: str
    attempts: int  # including the one about to be made
    lease_until: datetime  # when this claim lapses; also tells this claim from a later one
    epc_payload: str | None = None


async def claim_due(session: AsyncSession, *, limit: int, lease: float, now: datetime | None = None) -> list[Claimed]:
    """Take due pending deliveries as 'sending' for `lease` seconds and count the attempt about to be made."""
    now = now or clock.now()
    due = (
        select(email_deliveries.c.delivery_id)
        .where(and_(email_deliveries.c.status == PENDING, email_deliveries.c.next_attempt_at <= now))
        .order_by(email_deliveries.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            update(email_deliveries)
            .where(email_deliveries.c.delivery_id.in_(due))
            .values(
                status=SENDING, attempts=email_deliveries.c.attempts + 1, next_attempt_at=now + timedelta(seconds=lease)
            )
            .returning(*email_deliveries.c)
        )
    ).all()
    return [_claimed(row) for row in rows]


def _claimed(row: Row[Any]) -> Claimed:
    return record(Claimed, row, source_event_id=row.event_id, lease_until=row.next_attempt_at)


OutcomeT = TypeVar("OutcomeT", EmailSent, EmailFailed)


def _outcome(event_class: type[OutcomeT], claimed: Claimed, **facts: object) -> OutcomeT:
    """What became of the claimed delivery, from its fields of the same names and `facts`."""
    return record(event_class, dataclasses.asdict(claimed), **facts)


def _held_by(claimed: Claimed, *statuses: str) -> ColumnElement[bool]:
    """The row as this sender's attempt left it: not taken since by another sender or a resend."""
    return and_(
        email_deliveries.c.delivery_id == claimed.delivery_id,
        email_deliveries.c.next_attempt_at == claimed.lease_until,
        email_deliveries.c.status.in_(statuses),
    )


async def mark_sent(session: AsyncSession, claimed: Claimed) -> None:
    """The server took it. Also after a lease ran out meanwhile ('uncertain'): it did reach it."""
    now = clock.now()
    result = await session.execute(
        update(email_deliveries)
        .where(_held_by(claimed, SENDING, UNCERTAIN))
        .values(status=SENT, sent_at=now, last_error=None)
        .returning(email_deliveries.c.delivery_id)
    )
    if result.first() is not None:
        await outbox.add(session, _outcome(EmailSent, claimed))


async def mark_retry(session: AsyncSession, claimed: Claimed, error: str, delay: float) -> None:
    await session.execute(
        update(email_deliveries)
        .where(_held_by(claimed, SENDING))
        .values(status=PENDING, next_attempt_at=clock.now() + timedelta(seconds=delay), last_error=error[:2000])
    )


async def mark_failed(session: AsyncSession, claimed: Claimed, error: str, *, permanent: bool) -> None:
    result = await session.execute(
        update(email_deliveries)
        .where(_held_by(claimed, SENDING))
        .values(status=FAILED, failed_at=clock.now(), last_error=error[:2000])
        .returning(email_deliveries.c.delivery_id)
    )
    if result.first() is not None:
        await outbox.add(session, _outcome(EmailFailed, claimed, permanent=permanent, reason=error[:2000]))


async def give_up_interrupted(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Rows left 'sending' past their lease become 'uncertain' (reported as EmailFailed, not
    permanent), never sent again by themselves. Returns how many."""
    rows = (
        await session.execute(
            update(email_deliveries)
            .where(
                and_(email_deliveries.c.status == SENDING, email_deliveries.c.next_attempt_at <= (now or clock.now()))
            )
            .values(status=UNCERTAIN, failed_at=clock.now(), last_error=INTERRUPTED)
            .returning(*email_deliveries.c)
        )
    ).all()
    for row in rows:
        await outbox.add(session, _outcome(EmailFailed, _claimed(row), permanent=False, reason=INTERRUPTED))
    return len(rows)
