"""Background work with the card provider, outside any webhook request: each succeeded card
payment's fee, read from its balance transaction, then CardFeeCharged (the group's card fee
account bears it). Retried with backoff; several replicas share the jobs (SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import logging

from cagette_runtime.db import Database
from cagette_runtime.errors import Refused

from . import card
from .provider import CardProvider

log = logging.getLogger(__name__)


class FeeJobs:
    def __init__(self, database: Database, provider: CardProvider, interval: float) -> None:
        self.database = database
        self.provider = provider
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and self.provider.configured:
            self._task = asyncio.create_task(self._run(), name="card-fee-jobs")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("card fee jobs pass failed; retrying")
            await asyncio.sleep(self.interval)

    async def run_once(self) -> int:
        """One pass over the due jobs; returns how many fees were recorded."""
        async with self.database.transaction() as session:
            jobs = await card.claim_fee_jobs(session)
        done = 0
        for job in jobs:
            try:
                fee = await self.provider.fee(payment_intent=job.payment_intent_id, charge_id=job.charge_id, account=job.stripe_account)
            except Refused as exc:
                async with self.database.transaction() as session:
                    await card.fee_job_failed(session, job.payment_id, exc.reason, job.attempts + 1)
                continue
            async with self.database.transaction() as session:
                if fee is None:
                    await card.fee_job_failed(session, job.payment_id, "the provider does not know the fee yet", job.attempts + 1)
                    continue
                await card.record_fee(session, job.payment_id, fee)
                done += 1
        return done
