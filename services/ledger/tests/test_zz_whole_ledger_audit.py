"""Runs last (file order): the audit over the whole shared test database, i.e. over every group
the other tests created, including the property tests' random sequences. Nothing may breach."""

from __future__ import annotations

from cagette_ledger.audit import run_audit
from cagette_runtime.db import Database


async def test_every_group_the_suite_touched_passes_the_audit(db: Database) -> None:
    async with db.sessionmaker() as session:
        report = await run_audit(session)
    assert report.ok, report.breaches[:20]
