"""The ledger's settings: the runtime's (CAGETTE_*) plus its own."""

from __future__ import annotations

from pydantic import Field

from cagette_runtime.settings import ServiceSettings


class LedgerSettings(ServiceSettings):
    service_name: str = "ledger"
    # CAGETTE_LEDGER_BATCH_SIZE: how many delivered messages commit in one database transaction
    # (1 = the runtime's one transaction per message; at most CAGETTE_PREFETCH_COUNT).
    ledger_batch_size: int = Field(default=200, ge=1)
    # CAGETTE_LEDGER_HOLD_SWEEP_SECONDS: how often expired holds are marked expired.
    ledger_hold_sweep_seconds: float = Field(default=30.0, gt=0)
