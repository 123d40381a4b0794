"""Adapter: ask the ledger to hold money on a member's pot (request/reply over RabbitMQ).

The request is a `PlaceHold` sent to `routing.LEDGER_HOLD_REQUESTS_QUEUE`; the ledger answers a
`HoldDecision`. When the ledger cannot answer (no queue, no reply in time, a malformed reply)
the caller gets `LedgerUnavailable` (HTTP 503) and must record nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from uuid import UUID, uuid4

from faststream.rabbit import RabbitBroker
from pydantic import ValidationError

from cagette_contracts import Money, routing
from cagette_contracts.ledger import HoldDecision, PlaceHold, ReleaseHold
from cagette_contracts.routing import LEDGER_HOLD_RELEASES_QUEUE
from cagette_runtime import clock
from cagette_runtime.correlation import current_correlation_id
from cagette_runtime.errors import RetryLater

log = logging.getLogger(__name__)

# How long a granted hold lives if the order it was placed for never gets confirmed (the ledger
# releases it then). OrderConfirmed normally turns it into a debit within seconds.
HOLD_TTL = timedelta(minutes=15)


class LedgerUnavailable(RetryLater):
    """The ledger did not answer the money-pot check (in time, or in a form we understand)."""

    code = "ledger_unavailable"


class LedgerHolds:
    def __init__(self, broker: RabbitBroker, *, timeout: float = 5.0) -> None:
        self.broker = broker
        self.timeout = timeout

    async def place(self, *, group_id: UUID, member_id: UUID, order_id: UUID, amount: Money) -> HoldDecision:
        hold = PlaceHold(
            hold_id=uuid4(),
            group_id=group_id,
            member_id=member_id,
            order_id=order_id,
            amount=amount,
            expires_at=clock.now() + HOLD_TTL,
            correlation_id=current_correlation_id(),
        )
        try:
            reply = await self.broker.request(
                hold.model_dump_json(),
                queue=routing.LEDGER_HOLD_REQUESTS_QUEUE,
                timeout=self.timeout,
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

    async def release(self, *, group_id: UUID, hold_id: UUID, reason: str) -> None:
        """Best effort: tell the ledger a granted hold will not be used (its order was not
        recorded). If this message is lost the hold still expires by itself."""
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
            log.warning("could not release hold %s (%s: %s); it will expire", hold_id, type(exc).__name__, exc)
