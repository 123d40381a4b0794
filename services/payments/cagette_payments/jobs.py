"""Background work with the card provider, outside any webhook request: each succeeded card
payment's fee, read from its balance transaction, then CardFeeCharged (the group's card fee
account bears it). Retried with backoff; several replicas share the jobs (SKIP LOCKED).
What a job publishes keeps the correlation id of its cause (the provider's success notice)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Row

from cagette_runtime.background import BackgroundLoop
from cagette_runtime.correlation import reset_correlation_id, set_correlation_id
from cagette_runtime.db import Database
from cagette_runtime.errors import Refused, RetryLater

from . import card_store, card_usecases
from .provider import CardProvider

log = logging.getLogger(__name__)

BATCH = 10


class FeeJobs(BackgroundLoop):
    name = "card-fee-jobs"

    def __init__(self, database: Database, provider: CardProvider, interval: float) -> None:
        super().__init__(interval)
        self.database = database
        self.provider = provider

    async def run_once(self) -> bool:
        """One pass over the due jobs; True when a full batch was taken (more may wait)."""
        async with self.database.transaction() as session:
            jobs = await card_store.claim_fee_jobs(session, BATCH)
        for job in jobs:
            token = set_correlation_id(job.correlation_id)
            try:
                await self._run_job(job)
            finally:
                reset_correlation_id(token)
        return len(jobs) >= BATCH

    async def _run_job(self, job: Row[Any]) -> None:
        try:
            fee = await self.provider.fee(
                payment_intent=job.payment_intent_id, charge_id=job.charge_id, account=job.stripe_account
            )
        except (Refused, RetryLater) as exc:  # refused, or the provider unavailable: tried again later
            async with self.database.transaction() as session:
                await card_store.fee_job_failed(session, job.payment_id, exc.reason, job.attempts + 1)
            return
        async with self.database.transaction() as session:
            if fee is None:
                await card_store.fee_job_failed(
                    session, job.payment_id, "the provider does not know the fee yet", job.attempts + 1
                )
            else:
                await card_usecases.record_fee(session, job.payment_id, fee)
