"""Adapter: ask the ledger to hold money on a member's pot (request/reply over RabbitMQ), give
a hold back, and the loop that gives back every hold whose order was never recorded.

The request is a `PlaceHold` sent to `routing.LEDGER_HOLD_REQUESTS_QUEUE`; the ledger answers a
`HoldDecision`. Each request carries its deadline (`grant_before`) and is published with the
same AMQP expiration, so a request nobody took in time is dropped by the broker, a ledger that
takes it late refuses it, and orders stops waiting then. When the ledger cannot answer (no
queue, no reply by the deadline, a malformed reply) the caller gets `LedgerUnavailable` (HTTP
503) and records no order; the hold it asked for stays in `hold_requests` and is given back by
`HoldReconciler` if it was granted after all.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from uuid import UUID

from faststream.rabbit import RabbitBroker
from pydantic import ValidationError

from cagette_contracts import routing
from cagette_contracts.ledger import HoldDecision, PlaceHold, ReleaseHold
from cagette_contracts.routing import LEDGER_HOLD_RELEASES_QUEUE
from cagette_runtime import clock
from cagette_runtime.background import BackgroundLoop
from cagette_runtime.correlation import current_correlation_id
from cagette_runtime.db import Database
from cagette_runtime.errors import RetryLater

from . import usecases

log = logging.getLogger(__name__)

# How long orders waits for the ledger's decision: the request's deadline (grant_before).
REQUEST_TIMEOUT = 5.0
# How long a granted hold lives if no debit captures it. It only has to last from the grant to
# the ledger posting the order's OrderConfirmed: measured with orders and the ledger in-process
# (bench/holds/latency.py, 200 pot orders, 4 clients, on the shared 2-core development machine
# under load) at p50 174-274 ms, p99 0.44-0.91 s, max 1.25 s. Two minutes is over 100 times
# that worst case, room for a relay backing off or a ledger restarting; past it the debit still
# posts when OrderConfirmed arrives, only the money is no longer held meanwhile.
HOLD_LIFETIME = timedelta(minutes=2)
# How long after a request's deadline a hold whose order was not recorded is given back: the
# time an order takes to be recorded once the decision arrived, with room to spare.
RELEASE_GRACE = timedelta(seconds=30)


class LedgerUnavailable(RetryLater):
    """The ledger did not answer the money-pot check (in time, or in a form we understand)."""

    code = "ledger_unavailable"


class LedgerHolds:
    def __init__(
        self, broker: RabbitBroker, *, timeout: float = REQUEST_TIMEOUT, lifetime: timedelta = HOLD_LIFETIME
    ) -> None:
        self.broker = broker
        self.timeout = timeout
        self.lifetime = lifetime

    async def place(self, hold: PlaceHold) -> HoldDecision:
        remaining = (hold.grant_before - clock.now()).total_seconds() if hold.grant_before else self.timeout
        if remaining <= 0:
            raise LedgerUnavailable("the money-pot check ran out of time before it was asked; nothing was recorded")
        try:
            reply = await self.broker.request(
                hold.model_dump_json(),
                queue=routing.LEDGER_HOLD_REQUESTS_QUEUE,
                timeout=remaining,
                expiration=timedelta(seconds=max(remaining, 0.001)),
                correlation_id=hold.correlation_id,
                content_type="application/json",
            )
        except Exception as exc:
            log.warning("hold request %s got no answer: %s: %s", hold.hold_id, type(exc).__name__, exc)
            raise LedgerUnavailable(
                "the ledger did not answer the money-pot check; nothing was recorded, try again in a moment"
            ) from None
        try:
            decision = HoldDecision.model_validate_json(reply.body)
        except ValidationError as exc:
            log.error("malformed hold decision for %s: %s", hold.hold_id, exc)
            raise LedgerUnavailable(
                "the ledger's answer to the money-pot check was not understood; nothing was recorded"
            ) from None
        if decision.hold_id != hold.hold_id:
            raise LedgerUnavailable("the ledger answered another money-pot check; nothing was recorded")
        return decision

    async def release(self, *, group_id: UUID, hold_id: UUID, reason: str) -> bool:
        """Tell the ledger a hold will not be used (its order was not recorded); idempotent on
        the ledger's side. True once the broker confirmed it queued the message."""
        message = ReleaseHold(
            hold_id=hold_id, group_id=group_id, reason=reason, correlation_id=current_correlation_id()
        )
        try:
            await self.broker.publish(
                message.model_dump_json(),
                queue=LEDGER_HOLD_RELEASES_QUEUE,
                persist=True,
                mandatory=True,
                correlation_id=message.correlation_id,
                content_type="application/json",
                timeout=self.timeout,
            )
        except Exception as exc:
            log.warning("could not release hold %s now (%s: %s)", hold_id, type(exc).__name__, exc)
            return False
        return True


class HoldReconciler(BackgroundLoop):
    """Every `interval` seconds, gives back (ReleaseHold) each hold orders asked for whose order
    was not recorded `grace` after the request's deadline: the request timed out, or orders
    died between the grant and recording the order. A hold past its lifetime is only marked
    expired (the ledger expired it by itself)."""

    name = "orders-hold-reconciler"

    def __init__(
        self,
        database: Database,
        holds: usecases.Holds,
        interval: float,
        grace: timedelta = RELEASE_GRACE,
        batch: int = 100,
    ) -> None:
        super().__init__(interval)
        self.database = database
        self.holds = holds
        self.grace = grace
        self.batch = batch

    async def run_once(self) -> bool:
        return await self.reconcile_once() >= self.batch

    async def reconcile_once(self, now: datetime | None = None) -> int:
        """One pass; how many lapsed holds it resolved (given back or marked expired)."""
        resolved = await usecases.give_back_lapsed_holds(
            self.database, self.holds, asked_before=(now or clock.now()) - self.grace, limit=self.batch
        )
        if resolved:
            log.info("%d lapsed money-pot hold(s) given back", resolved)
        return resolved
