"""Batched consumption: many messages committed in one database transaction.

The runtime's ConsumerRunner commits one transaction per message. A batched consumer (`Consumer(...,
batched=True)`, or the ledger's postings) instead buffers the messages the broker has delivered
(up to the channel's prefetch), and commits them together: one inbox claim for all of them, then
each event's handler in delivery order (or the consumer's own batch handler: the ledger posts runs
of postings together), in a single transaction, then acks them all. Under a light load a batch is
one message; under a heavy one the per-message costs (a transaction's BEGIN and COMMIT, the inbox
claim, a pooled connection) are paid once per batch. It is the runtime's pipeline with a batched
middle step: it subscribes, decodes and parks through the runtime's runner, so the same things
happen:

* a malformed message, or one with no handler in the registry, is parked at once with its
  reason (it never joins a batch), whatever its content type claims;
* duplicates (already in the inbox, or twice in one batch) have no second effect;
* when any message of a batch is refused or fails, the whole batch is rolled back and each of its
  messages goes through the runtime's per-message path (`ConsumerRunner.process`), which parks
  the refused one with its reason, sends one that met an outage (`RetryLater`, the database
  down) to the retry queue uncounted, and retries any other failure under the delivery limit, so
  a bad message never costs the others anything but a retry (a failed batch of one, run by the
  registry's handlers, goes straight to that failure handling: it would only fail again).

One consumer processes one batch at a time, so a replica is the single writer of what it
consumes and a batch's locks are taken by one transaction. Across replicas, a deadlock aborts a
batch, which then falls back to per-message processing. Only handlers whose effects are all in
the database may be batched: a rolled-back batch runs its handlers again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from faststream.rabbit.message import RabbitMessage
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Event

from .background import BackgroundLoop
from .consumer import ConsumerRunner
from .correlation import reset_correlation_id, set_correlation_id
from .inbox import claim_many
from .tracing import batch_causes, continued_from, current_trace_carrier

BatchHandler = Callable[[AsyncSession, list[Event]], Awaitable[None]]

log = logging.getLogger(__name__)


def _trace_id(carrier: dict[str, str]) -> str | None:
    """The trace id of a W3C `traceparent` (version-traceid-spanid-flags), None without one."""
    parts = carrier.get("traceparent", "").split("-")
    return parts[1] if len(parts) == 4 else None


class BatchingConsumer(BackgroundLoop):
    """Buffers delivered messages; the loop (woken by each arrival) commits them in batches."""

    def __init__(
        self,
        runner: ConsumerRunner,
        *,
        batch_handler: BatchHandler | None = None,
        max_batch: int = 200,
        linger: float = 0.002,
    ) -> None:
        super().__init__(interval=1.0)
        self.name = f"{runner.consumer.queue.name}-batches"
        self.database = runner.database
        self.runner = runner  # the pipeline: subscription, decoding, parking, per-message fallback
        self.consumer = runner.consumer
        self.batch_handler = batch_handler or self.dispatch_each
        self.max_batch = max_batch
        self.linger = linger
        self._buffer: list[RabbitMessage] = []
        # The trace context each delivery was received in (by message id): the events a batch
        # writes to the outbox stay in the trace of their cause.
        self._traces: dict[str, dict[str, str]] = {}
        self.received = 0
        self.batches = 0
        self.fallbacks = 0
        self.largest = 0

    async def dispatch_each(self, session: AsyncSession, events: list[Event]) -> None:
        """The default batch handler: each event's handler from the registry, in delivery order."""
        for event in events:
            set_correlation_id(event.correlation_id)
            await self.consumer.handlers.dispatch(session, event)

    def subscribe(self) -> None:
        self.runner.subscribe(self.receive, title=f"{self.consumer.queue.name} (batched)")

    async def receive(self, message: RabbitMessage) -> None:
        self.received += 1
        self._traces[message.message_id] = current_trace_carrier()
        self._buffer.append(message)
        self.wake()

    async def run_once(self) -> bool:
        """Commit one batch of what was delivered; True while more is buffered."""
        if not self._buffer:
            return False
        # Let the broker's already-delivered messages join the batch (bounded wait).
        if len(self._buffer) < self.max_batch and self.linger > 0:
            await asyncio.sleep(self.linger)
        batch, self._buffer = self._buffer[: self.max_batch], self._buffer[self.max_batch :]
        try:
            await self.process_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batch of %d failed outside the database; messages will be redelivered", len(batch))
            for message in batch:
                try:
                    await message.nack(requeue=True)
                except Exception:
                    pass
        return bool(self._buffer)

    async def process_batch(self, batch: list[RabbitMessage]) -> None:
        traces = {message.message_id: self._traces.pop(message.message_id, {}) for message in batch}
        parsed: list[tuple[RabbitMessage, Event]] = []
        for message in batch:
            if (event := await self.runner.accept(message)) is not None:
                parsed.append((message, event))
        if not parsed:
            return
        # A batch of one action's events (the common case when the load is light) runs within
        # its trace, so its database statements show there; a mixed batch belongs to none.
        carriers = [traces[message.message_id] for message, _ in parsed]
        # One trace even when its events came through different spans (an order and the payment
        # it caused): compare trace ids, not whole carriers.
        within = carriers[0] if len({_trace_id(carrier) for carrier in carriers}) == 1 else {}
        try:
            with continued_from(within):
                await self._commit(parsed, traces)
        except Exception as exc:
            # A batch of one run by the registry's handlers failed as it would alone: its failure
            # is handled as the runner's (a service's own batch handler is checked by the
            # per-message path, whose reasons are the reference).
            if len(parsed) == 1 and self.batch_handler == self.dispatch_each:
                message, event = parsed[0]
                with continued_from(traces[message.message_id]):
                    await self.runner.failed(message, event, exc)
                return
            self.fallbacks += 1
            log.info(
                "batch of %d rolled back (%s: %s); processing its messages one by one",
                len(parsed),
                type(exc).__name__,
                exc,
            )
            for message, _ in parsed:
                with continued_from(traces[message.message_id]):
                    await self.runner.process(message)
            return
        self.batches += 1
        self.largest = max(self.largest, len(parsed))
        for message, _ in parsed:
            await message.ack()

    async def _commit(self, parsed: list[tuple[RabbitMessage, Event]], traces: dict[str, dict[str, str]]) -> None:
        async with self.database.transaction() as session:
            claimed = await claim_many(session, self.runner.name, [event for _, event in parsed])
            # Events keep their own correlation ids; the batch's statements log the first.
            token = set_correlation_id(claimed[0].correlation_id if claimed else None)
            causes = {event.correlation_id: traces[message.message_id] for message, event in parsed}
            try:
                if claimed:
                    with batch_causes(causes):
                        await self.batch_handler(session, claimed)
            finally:
                reset_correlation_id(token)
