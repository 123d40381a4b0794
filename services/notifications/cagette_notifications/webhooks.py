"""Outbound webhooks: events delivered over HTTPS to systems that cannot speak AMQP.

A group's coordinator (for the group's events) or a platform administrator (for every group's)
registers an HTTPS URL and the event types it wants (topic patterns, as AMQP bindings). Each
matching event becomes a delivery in the webhook delivery log, in the consumer's transaction;
the sender POSTs it later, signed with the Standard Webhooks scheme (headers `webhook-id` = the
event id, `webhook-timestamp`, `webhook-signature`), and retries with capped exponential backoff
for `webhook_retry_for` (days). An endpoint that has not accepted anything for
`webhook_disable_after` is disabled and its owners are emailed: the group's coordinators, or for a
platform endpoint the address given at registration. Deliveries can be
replayed, one or all since a time; the log shows attempts, last status and last error.

The `notifications.webhooks` queue is bound only with the patterns enabled endpoints ask for
(`sync_bindings`, run at start, whenever an endpoint is registered or enabled, before it is
answered, and when one is disabled for failing): an event no endpoint wants is never queued,
consumed and dropped. So an endpoint gets the events published after its registration (or its
enabling) was answered.

Why here: notifications already delivers to the outside world with retries and a delivery log
(emails), and knows each group's coordinators to tell when an endpoint gets disabled.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from base64 import b64encode
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
from faststream.rabbit import RabbitBroker
from sqlalchemy import Row, and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from cagette_contracts import Event
from cagette_contracts.routing import EVENTS_EXCHANGE
from cagette_runtime import clock
from cagette_runtime.asyncapi import topic_matches
from cagette_runtime.correlation import reset_correlation_id, set_correlation_id
from cagette_runtime.db import OUTBOX_WRITTEN, AnyRow, Database
from cagette_runtime.rows import field_names, record
from cagette_runtime.topology import ConsumerQueue

from . import domain
from .sender import EmailingLoop
from .settings import NotificationSettings
from .store import NotYetKnown, load_recipient
from .tables import member_directory, webhook_bindings, webhook_deliveries, webhook_endpoints

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
EVENT_TYPE_PATTERN = re.compile(r"^(#|\*|[a-z_]+)(\.(#|\*|[a-z_]+)){0,2}$")
USER_AGENT = "cagette-webhooks/1"
# The queue the webhook deliveries are recorded from (handlers.py consumes it).
WEBHOOKS_QUEUE = "notifications.webhooks"
# Serializes the syncs of every replica (pg_advisory_xact_lock): one reads the endpoints and
# changes the bindings at a time, so a sync cannot unbind what another's endpoint just needed.
_BINDINGS_LOCK = 0x6E6F74692E776862  # "noti.whb"


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + b64encode(secrets.token_bytes(32)).decode()


def wants(patterns: list[str], event_type: str) -> bool:
    return any(topic_matches(pattern, event_type) for pattern in patterns)


async def sync_bindings(session: AsyncSession, broker: RabbitBroker) -> tuple[set[str], set[str]]:
    """Bind the webhooks queue with every pattern an enabled endpoint wants (as this session sees
    the endpoints: call it in the transaction that registers or enables one) and unbind the rest;
    returns (bound, unbound). The broker's bindings are changed before the table that records
    them commits: after a failure the next sync binds or unbinds again (both are idempotent)."""
    await session.execute(select(func.pg_advisory_xact_lock(_BINDINGS_LOCK)))
    wanted = set(
        await session.scalars(
            select(func.unnest(webhook_endpoints.c.event_types)).where(webhook_endpoints.c.enabled).distinct()
        )
    )
    recorded = set(await session.scalars(select(webhook_bindings.c.pattern)))
    to_bind, to_unbind = wanted - recorded, recorded - wanted
    if not to_bind and not to_unbind:
        return set(), set()
    queue = await broker.declare_queue(ConsumerQueue(WEBHOOKS_QUEUE, ()).queue())
    for pattern in sorted(to_bind):
        await queue.bind(EVENTS_EXCHANGE, routing_key=pattern)
    for pattern in sorted(to_unbind):
        await queue.unbind(EVENTS_EXCHANGE, routing_key=pattern)
    if to_bind:
        await session.execute(pg_insert(webhook_bindings).values([{"pattern": p} for p in to_bind]))
    if to_unbind:
        await session.execute(delete(webhook_bindings).where(webhook_bindings.c.pattern.in_(to_unbind)))
    log.info("webhooks queue: bound %s, unbound %s", sorted(to_bind) or "-", sorted(to_unbind) or "-")
    return to_bind, to_unbind


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next try after `attempts` failed ones: base, 4x base, 16x base... capped."""
    return min(cap, base * 4 ** max(0, attempts - 1))


def signed_headers(secret: str, event_id: str, body: str, at: datetime) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, at, body),
    }


async def record_deliveries(session: AsyncSession, event: Event) -> int:
    """One pending delivery per enabled endpoint that wants the event (idempotent per event)."""
    endpoints = (
        await session.execute(
            select(webhook_endpoints.c.endpoint_id, webhook_endpoints.c.event_types).where(
                webhook_endpoints.c.enabled,
                or_(webhook_endpoints.c.group_id == event.group_id, webhook_endpoints.c.group_id.is_(None)),
            )
        )
    ).all()
    wanted = [row.endpoint_id for row in endpoints if wants(row.event_types, event.routing_key())]
    if not wanted:
        return 0
    body = event.model_dump_json()
    await session.execute(
        pg_insert(webhook_deliveries)
        .values(
            [
                {
                    "delivery_id": uuid4(),
                    "endpoint_id": endpoint_id,
                    "event_id": event.event_id,
                    "event_type": event.routing_key(),
                    "group_id": event.group_id,
                    "correlation_id": event.correlation_id,
                    "body": body,
                    "status": PENDING,
                }
                for endpoint_id in wanted
            ]
        )
        .on_conflict_do_nothing(constraint="webhook_deliveries_once")
    )
    session.info[OUTBOX_WRITTEN] = True  # wakes the sender after commit
    return len(wanted)


@dataclass(frozen=True)
class Attempt:
    delivery_id: UUID
    endpoint_id: UUID
    url: str
    secret: str
    event_id: UUID
    body: str
    attempts: int
    window_started_at: datetime  # retries stop `webhook_retry_for` after it
    correlation_id: str | None


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str | None


class WebhookSender(EmailingLoop):
    """Claims due deliveries (a lease, SKIP LOCKED: replicas share them), POSTs them with no
    database transaction open, then records each outcome in its own transaction."""

    name = "webhook-sender"

    def __init__(self, database: Database, settings: NotificationSettings, broker: RabbitBroker) -> None:
        super().__init__(database, settings, settings.webhook_poll_interval)
        self.broker = broker  # to unbind what only a disabled endpoint wanted
        database.on_outbox_commit(self.wake)

    async def run_once(self) -> bool:
        s = self.settings
        async with self.database.transaction() as session:
            batch = await self._claim(session)
        if batch:
            slots = asyncio.Semaphore(s.webhook_concurrency)
            async with httpx.AsyncClient(timeout=s.webhook_timeout, follow_redirects=False) as http:

                async def attempt(item: Attempt) -> None:
                    async with slots:
                        outcome = await self._post(http, item)
                    token = set_correlation_id(item.correlation_id)
                    try:
                        async with self.database.transaction() as session:
                            await self._record(session, item, outcome)
                    finally:
                        reset_correlation_id(token)

                await asyncio.gather(*(attempt(item) for item in batch))
        async with self.database.transaction() as session:
            await self._disable_failing(session)
        return len(batch) >= s.webhook_batch_size

    async def _claim(self, session: AsyncSession) -> list[Attempt]:
        s = self.settings
        rows: Sequence[AnyRow] = (
            await session.execute(
                # An attempt's fields: the endpoint's address and secret, the rest the delivery's.
                select(
                    *(webhook_deliveries.c[name] for name in field_names(Attempt) if name not in ("url", "secret")),
                    webhook_endpoints.c.url,
                    webhook_endpoints.c.secret,
                )
                .join(webhook_endpoints, webhook_endpoints.c.endpoint_id == webhook_deliveries.c.endpoint_id)
                .where(
                    webhook_deliveries.c.status == PENDING,
                    webhook_deliveries.c.next_attempt_at <= func.now(),
                    webhook_endpoints.c.enabled,
                )
                .order_by(webhook_deliveries.c.next_attempt_at)
                .limit(s.webhook_batch_size)
                .with_for_update(of=webhook_deliveries, skip_locked=True)
            )
        ).all()
        if rows:
            await session.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.delivery_id.in_([row.delivery_id for row in rows]))
                .values(
                    attempts=webhook_deliveries.c.attempts + 1,
                    next_attempt_at=func.now() + timedelta(seconds=s.webhook_lease),
                )
            )
        return [record(Attempt, row, attempts=row.attempts + 1) for row in rows]

    async def _post(self, http: httpx.AsyncClient, item: Attempt) -> Outcome:
        headers = signed_headers(item.secret, str(item.event_id), item.body, clock.now())
        try:
            response = await http.post(item.url, content=item.body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:1000])
        if 200 <= response.status_code < 300:
            return Outcome(True, response.status_code, None)
        return Outcome(False, response.status_code, f"HTTP {response.status_code}: {response.text[:500]}")

    async def _record(self, session: AsyncSession, item: Attempt, outcome: Outcome) -> None:
        s = self.settings
        now = clock.now()
        endpoint = webhook_endpoints.c.endpoint_id == item.endpoint_id
        delivery = webhook_deliveries.c.delivery_id == item.delivery_id
        if outcome.ok:
            await session.execute(
                update(webhook_deliveries)
                .where(delivery)
                .values(status=DELIVERED, delivered_at=now, last_status_code=outcome.status_code, last_error=None)
            )
            await session.execute(
                update(webhook_endpoints).where(endpoint).values(failing_since=None, last_success_at=now)
            )
            return
        give_up = now - item.window_started_at >= s.webhook_retry_for
        delay = retry_delay(item.attempts, s.webhook_retry_base, s.webhook_retry_max)
        log.warning(
            "webhook delivery %s of event %s to %s failed (attempt %d)%s: %s",
            item.delivery_id,
            item.event_id,
            item.url,
            item.attempts,
            ", giving up" if give_up else f", retry in {delay:.0f}s",
            outcome.error,
        )
        await session.execute(
            update(webhook_deliveries)
            .where(delivery)
            .values(
                status=FAILED if give_up else PENDING,
                next_attempt_at=now + timedelta(seconds=delay),
                last_status_code=outcome.status_code,
                last_error=outcome.error,
            )
        )
        await session.execute(
            update(webhook_endpoints)
            .where(endpoint, webhook_endpoints.c.failing_since.is_(None))
            .values(failing_since=now)
        )

    async def _disable_failing(self, session: AsyncSession) -> None:
        """Disable endpoints that accepted nothing for `webhook_disable_after`; tell their owners."""
        cutoff = clock.now() - self.settings.webhook_disable_after
        disabled = (
            await session.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.enabled, webhook_endpoints.c.failing_since <= cutoff)
                .values(
                    enabled=False,
                    disabled_at=func.now(),
                    disabled_reason=f"no delivery accepted since {cutoff:%Y-%m-%d %H:%M} UTC or before",
                )
                .returning(webhook_endpoints)
            )
        ).all()
        if disabled:
            await sync_bindings(session, self.broker)
        for endpoint in disabled:
            log.error("webhook endpoint %s (%s) disabled: %s", endpoint.endpoint_id, endpoint.url, "failing")
            await self._tell_owner(session, endpoint)

    async def _tell_owner(self, session: AsyncSession, endpoint: Row[Any]) -> None:
        """Email the group's coordinators, or the owner a platform endpoint was registered with."""
        if endpoint.group_id is None:
            if endpoint.owner_email is None:  # registered before owners were asked for: the log says it
                return
            recipients = [domain.platform_owner(endpoint.owner_email, endpoint.owner_language, endpoint.created_by)]
        else:
            recipients = await self._coordinators(session, endpoint.group_id)
        last_error = await session.scalar(
            select(webhook_deliveries.c.last_error)
            .where(
                webhook_deliveries.c.endpoint_id == endpoint.endpoint_id, webhook_deliveries.c.last_error.is_not(None)
            )
            .order_by(webhook_deliveries.c.next_attempt_at.desc())
            .limit(1)
        )
        emails = domain.webhook_disabled(
            endpoint.endpoint_id,
            endpoint.disabled_at,
            recipients,
            url=endpoint.url,
            failing_since=endpoint.failing_since,
            last_error=last_error or "",
        )
        await self.send(session, emails)

    async def _coordinators(self, session: AsyncSession, group_id: UUID) -> list[tuple[domain.Group, domain.Member]]:
        rows = (
            await session.execute(
                select(member_directory.c.member_id).where(
                    and_(member_directory.c.group_id == group_id, member_directory.c.role == "coordinator")
                )
            )
        ).all()
        found = []
        for row in rows:
            try:
                found.append(await load_recipient(session, group_id, row.member_id))
            except NotYetKnown:
                continue
        return found
