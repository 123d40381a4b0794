"""Money-pot holds over RabbitMQ request/reply (SPEC R13, B2; ARCHITECTURE "ledger").

Contract (cagette_contracts.ledger), kept exactly:

* Request: a `PlaceHold` JSON body published to the queue `ledger.hold-requests`
  (`routing.LEDGER_HOLD_REQUESTS_QUEUE`, default exchange) with `reply_to` set. The orders
  service does, with FastStream 0.7::

      reply = await broker.request(PlaceHold(...).model_dump_json(),
                                   queue="ledger.hold-requests", timeout=5)
      decision = HoldDecision.model_validate_json(reply.body)

* Reply: a `HoldDecision` JSON body (content type application/json) sent to `reply_to` with
  the request's correlation id. `granted` false comes with `reason` and `available` (posted
  balance minus active holds; pending credits never count). A body that is not a valid
  PlaceHold gets `{"error": "malformed", "detail": ...}` instead, never a decision.
* The caller derives the hold_id from its order attempt, so a retry after a timeout asks again
  with the same hold_id and gets the same stored decision: the same grant (nothing more is
  held) or the same refusal. A granted hold that no longer counts (released, expired) is not
  granted again (a refusal says so: the caller's next attempt uses a new hold_id); a hold_id
  reused with a different group, member, order or amount is refused (`operations.place_hold`).
* A request carrying `grant_before` that arrives at or after it is refused and changes
  nothing: the caller stopped waiting then. The caller also publishes it with that AMQP
  expiration, so a request still queued at its deadline (a ledger down or restarting) is
  dropped by the broker and never decided.
* The decision is atomic: the member account row is locked while the available amount is
  computed and the hold written, so concurrent holds can never together overdraw.
* A granted hold is turned into the order's posted debit by `orders.order.confirmed` for the
  same order_id; it expires at `expires_at` (ignored at once by every read, and marked expired by
  a periodic sweep), or is released earlier by a `ReleaseHold` sent to `ledger.hold-releases`
  (answered with `HoldReleased` when reply_to is set).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from uuid import UUID

from faststream import Context
from faststream.rabbit import RabbitQueue, RabbitResponse
from faststream.rabbit.message import RabbitMessage
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import HoldDecision, HoldReleased, Money, PlaceHold, ReleaseHold, routing
from cagette_contracts.routing import LEDGER_HOLD_RELEASES_QUEUE
from cagette_runtime.background import BackgroundLoop
from cagette_runtime.correlation import reset_correlation_id, set_correlation_id
from cagette_runtime.db import Database
from cagette_runtime.errors import Refused

from . import operations
from .tables import holds

if TYPE_CHECKING:
    from cagette_runtime.service import Service

log = logging.getLogger(__name__)

# Requests older than this are dropped by the broker whatever they carry (a queue argument, so it
# never changes). Each request also carries its own, shorter AMQP expiration: its grant_before.
REQUEST_TTL_MS = 60_000


def _malformed(body: bytes, exc: Exception) -> dict[str, Any]:
    detail = exc.errors(include_url=False) if isinstance(exc, ValidationError) else str(exc)
    return {"error": "malformed", "detail": json.loads(json.dumps(detail, default=str))}


async def answer_hold_request(database: Database, body: bytes) -> dict[str, Any]:
    """The reply body for one PlaceHold request body."""
    try:
        request = PlaceHold.model_validate_json(body)
    except (ValidationError, ValueError) as exc:
        return _malformed(body, exc)
    token = set_correlation_id(request.correlation_id)
    try:
        try:
            async with database.transaction() as session:
                decision = await operations.place_hold(session, request)
        except Exception as exc:
            log.exception("hold %s could not be decided", request.hold_id)
            # Nothing was recorded: a refusal the caller may retry with the same hold_id.
            return HoldDecision(
                hold_id=request.hold_id,
                granted=False,
                available=Money(amount=0, currency=request.amount.currency),
                reason=f"the ledger could not decide now ({type(exc).__name__}); ask again with the same hold_id",
                decided=False,
            ).model_dump(mode="json")
        log.info(
            "hold %s for order %s: %s",
            request.hold_id,
            request.order_id,
            "granted" if decision.granted else f"refused ({decision.reason})",
        )
        return decision.model_dump(mode="json")
    finally:
        reset_correlation_id(token)


async def answer_release_request(database: Database, body: bytes) -> dict[str, Any]:
    try:
        request = ReleaseHold.model_validate_json(body)
    except (ValidationError, ValueError) as exc:
        return _malformed(body, exc)
    async with database.transaction() as session:
        try:
            status = await operations.release_hold(session, request.hold_id, request.reason)
        except Refused as exc:
            return HoldReleased(hold_id=request.hold_id, status="unknown", reason=exc.reason).model_dump(mode="json")
        row = (
            await session.execute(
                holds.select()
                .with_only_columns(holds.c.account_id, holds.c.currency)
                .where(holds.c.hold_id == request.hold_id)
            )
        ).first()
        available = None
        if row is not None and row.account_id is not None:
            available = Money(amount=await available_amount(session, row.account_id), currency=row.currency)
    return HoldReleased(hold_id=request.hold_id, status=status, available=available).model_dump(mode="json")


async def available_amount(session: AsyncSession, account_id: UUID) -> int:
    from .tables import accounts

    balance = await session.scalar(
        accounts.select().with_only_columns(accounts.c.balance).where(accounts.c.account_id == account_id)
    )
    return int(balance or 0) - await operations.active_holds_total(session, account_id)


def hold_requests_queue() -> RabbitQueue:
    return RabbitQueue(routing.LEDGER_HOLD_REQUESTS_QUEUE, durable=True, arguments={"x-message-ttl": REQUEST_TTL_MS})


def hold_releases_queue() -> RabbitQueue:
    return RabbitQueue(LEDGER_HOLD_RELEASES_QUEUE, durable=True)


def reply(body: dict[str, Any]) -> RabbitResponse:
    """A reply to `reply_to`, published without the mandatory flag.

    Callers ask with RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to.<token>`), a pseudo-queue
    no exchange routes to: RabbitMQ delivers the reply to the caller's channel, yet answers a
    *mandatory* publish to it with a basic.return NO_ROUTE, which the broker (on_return_raises)
    turns into a PublishError logged with a traceback on every request. The caller waits for the
    reply itself, so mandatory adds nothing here."""
    return RabbitResponse(body, mandatory=False, content_type="application/json")


def register(service: Service) -> None:
    """Subscribe the request/reply endpoints on the service's broker."""
    database = service.database

    @service.broker.subscriber(hold_requests_queue(), title="ledger.hold-requests")
    async def on_hold_request(message: RabbitMessage = Context("message")) -> RabbitResponse:
        return reply(await answer_hold_request(database, message.body))

    @service.broker.subscriber(hold_releases_queue(), title="ledger.hold-releases")
    async def on_hold_release(message: RabbitMessage = Context("message")) -> RabbitResponse:
        return reply(await answer_release_request(database, message.body))


class HoldSweeper(BackgroundLoop):
    """Marks expired holds every `interval` seconds (reads already ignore them)."""

    name = "ledger-hold-sweeper"

    def __init__(self, database: Database, interval: float) -> None:
        super().__init__(interval)
        self.database = database

    async def run_once(self) -> bool:
        await self.sweep_once()
        return False

    async def sweep_once(self) -> int:
        async with self.database.transaction() as session:
            expired = await operations.expire_holds(session)
        if expired:
            log.info("%d hold(s) expired", expired)
        return expired
