"""Background tasks: the sender (delivery log -> SMTP) and the negative-balance reminder scheduler.

The sender never holds a database transaction while it talks SMTP: it claims due deliveries
(a short transaction that leases them and counts the attempt), sends them, then records each
outcome in its own short transaction (sent + EmailSent, retry later, or failed + EmailFailed,
the events going through the outbox). Several replicas share the work (SKIP LOCKED + lease).
An email is sent at most once per delivery row (delivery.py says how).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import new_correlation_id
from cagette_runtime import clock
from cagette_runtime.background import BackgroundLoop
from cagette_runtime.correlation import reset_correlation_id, set_correlation_id
from cagette_runtime.db import Database

from . import domain
from .delivery import Claimed, claim_due, enqueue, give_up_interrupted, mark_failed, mark_retry, mark_sent
from .domain import Kind
from .settings import NotificationSettings
from .smtp import SendFailure, SmtpClient, sender_domain
from .store import NotYetKnown, load_recipient, pending_payments, state_from_row
from .tables import member_balances

log = logging.getLogger(__name__)


class EmailSender(BackgroundLoop):
    name = "email-sender"

    def __init__(self, database: Database, settings: NotificationSettings, client: SmtpClient | None = None) -> None:
        super().__init__(settings.smtp_poll_interval)
        self.database = database
        self.settings = settings
        self.client = client or SmtpClient(settings)
        database.on_outbox_commit(self.wake)

    async def run_once(self) -> bool:
        """Send one batch of due emails. True when the batch was full (more may be due)."""
        async with self.database.transaction() as session:
            if interrupted := await give_up_interrupted(session):
                log.warning(
                    "%d email(s) interrupted mid-send by a stopped sender: marked uncertain, not resent", interrupted
                )
            batch = await claim_due(session, limit=self.settings.smtp_batch_size, lease=self.settings.smtp_lease)
        if not batch:
            return False
        slots = asyncio.Semaphore(self.settings.smtp_concurrency)

        async def deliver(claimed: Claimed) -> None:
            async with slots:
                await self._deliver(claimed)

        await asyncio.gather(*(deliver(claimed) for claimed in batch))
        return len(batch) >= self.settings.smtp_batch_size

    async def _deliver(self, claimed: Claimed) -> None:
        s = self.settings
        try:
            await self.client.send(claimed)
        except SendFailure as failure:
            async with self.database.transaction() as session:
                if failure.permanent:
                    log.error(
                        "email %s (%s to %s) refused for good: %s",
                        claimed.delivery_id,
                        claimed.kind,
                        claimed.recipient,
                        failure,
                    )
                    await mark_failed(session, claimed, failure.reason, permanent=True)
                elif claimed.attempts >= s.smtp_max_attempts:
                    log.error(
                        "email %s (%s to %s) failed %d times, giving up: %s",
                        claimed.delivery_id,
                        claimed.kind,
                        claimed.recipient,
                        claimed.attempts,
                        failure,
                    )
                    await mark_failed(
                        session,
                        claimed,
                        f"gave up after {claimed.attempts} attempts: {failure.reason}",
                        permanent=False,
                    )
                else:
                    delay = domain.retry_delay(claimed.attempts, s.smtp_retry_base, s.smtp_retry_max)
                    log.warning(
                        "email %s (%s to %s) not sent (attempt %d), retry in %.1fs: %s",
                        claimed.delivery_id,
                        claimed.kind,
                        claimed.recipient,
                        claimed.attempts,
                        delay,
                        failure,
                    )
                    await mark_retry(session, claimed, failure.reason, delay)
            return
        async with self.database.transaction() as session:
            await mark_sent(session, claimed)
        log.info("email %s (%s) sent to %s", claimed.delivery_id, claimed.kind, claimed.recipient)


class EmailingLoop(BackgroundLoop):
    """A background loop that logs emails to send (the reminders, the webhook-disabled notices)."""

    def __init__(self, database: Database, settings: NotificationSettings, interval: float) -> None:
        super().__init__(interval)
        self.database = database
        self.settings = settings
        self.domain = sender_domain(settings.smtp_sender)

    async def send(self, session: AsyncSession, emails: list[domain.Email]) -> None:
        await enqueue(session, emails, sender_domain=self.domain, timezone=self.settings.timezone)


class ReminderScheduler(EmailingLoop):
    """Negative balances: the episode's reminder after the grace period, then a digest every
    `reminder_interval`, while the balance stays negative and pending payments do not cover it."""

    name = "balance-reminders"

    def __init__(self, database: Database, settings: NotificationSettings) -> None:
        super().__init__(database, settings, settings.reminder_check_interval)

    async def run_once(self, now: datetime | None = None) -> bool:
        now = now or clock.now()
        s = self.settings
        async with self.database.transaction() as session:
            rows = (
                await session.execute(
                    select(member_balances)
                    .where(
                        and_(
                            member_balances.c.negative_since.is_not(None),
                            member_balances.c.balance < 0,
                            or_(
                                and_(
                                    member_balances.c.last_reminder_at.is_(None),
                                    member_balances.c.negative_since <= now - s.reminder_grace,
                                ),
                                member_balances.c.last_reminder_at <= now - s.reminder_interval,
                            ),
                        )
                    )
                    .with_for_update(skip_locked=True)
                )
            ).all()
            # No event caused this run: one correlation id per run and group, for its emails.
            run_ids: dict[UUID, str] = {}
            for row in rows:
                token = set_correlation_id(run_ids.setdefault(row.group_id, new_correlation_id()))
                try:
                    await self._remind(session, row, now)
                finally:
                    reset_correlation_id(token)
        return False

    async def _remind(self, session: AsyncSession, row: Row[Any], now: datetime) -> None:
        s = self.settings
        state = state_from_row(row, row.currency)
        pending = await pending_payments(session, row.group_id, row.member_id, row.currency, state.as_of)
        kind = domain.next_reminder(state, now, grace=s.reminder_grace, interval=s.reminder_interval, pending=pending)
        if kind is None:
            return  # covered by pending payments (checked again next time)
        try:
            group, member = await load_recipient(session, row.group_id, row.member_id)
        except NotYetKnown:
            return
        assert state.negative_since is not None
        if kind == Kind.BALANCE_REMINDER:
            event_id = state.episode_event_id or domain.digest_event_id(
                f"{row.group_id}:{row.member_id}", state.negative_since, state.negative_since
            )
        else:
            assert state.last_reminder_at is not None
            event_id = domain.digest_event_id(
                f"{row.group_id}:{row.member_id}", state.negative_since, state.last_reminder_at
            )
        await self.send(session, domain.balance_email(kind, event_id, group, member, state, now, pending))
        # Also when the member opted out: the reminder was due and is skipped, not postponed.
        await session.execute(
            update(member_balances)
            .where(and_(member_balances.c.group_id == row.group_id, member_balances.c.member_id == row.member_id))
            .values(last_reminder_at=now)
        )
