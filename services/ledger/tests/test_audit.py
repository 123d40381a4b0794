"""The audit command and what it catches, on a database of its own (so the breaches planted
here never leak into other tests)."""

from __future__ import annotations

import asyncio
import sys
import uuid

from sqlalchemy import text

from cagette_contracts import AccountType, Money
from cagette_ledger import operations
from cagette_ledger.app import MIGRATIONS
from cagette_ledger.audit import audit_database
from cagette_ledger.domain import Leg, TransactionDraft, group_account, member_account
from cagette_runtime.db import Database
from cagette_runtime.migrations import upgrade_async
from cagette_runtime.testing import IsolatedServers


async def cli(url: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cagette_ledger",
        "audit",
        "--database-url",
        url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


def order(group: uuid.UUID, member: uuid.UUID, cents: int) -> TransactionDraft:
    return TransactionDraft(
        group_id=group,
        kind="order",
        idempotency_key=str(uuid.uuid4()),
        legs=(
            Leg(member_account(group, member), Money(amount=-cents, currency="EUR")),
            Leg(group_account(group, AccountType.SALES), Money(amount=cents, currency="EUR")),
        ),
    )


async def test_audit_command_passes_then_catches_each_breach(servers: IsolatedServers) -> None:
    url = await servers.create_database("ledger_audit")
    await upgrade_async(url, MIGRATIONS)
    db = Database(url)
    group, member = uuid.uuid4(), uuid.uuid4()
    try:
        async with db.transaction() as session:
            for cents in (100, 200):
                posted = await operations.post_and_publish(session, order(group, member, cents))
            await operations.reverse(session, group, posted.transaction_id, reason="test", recorded_by=None)
        code, out = await cli(url)
        assert code == 0, out
        assert f"group {group} (EUR): OK" in out
        for name in (
            "every transaction balances: 3 checked",
            "trial balance is zero",
            "stored balance = sum of postings",
            "running balances consistent: 6 checked",
            "reversals negate what they reverse: 1 checked",
        ):
            assert name in out, out
        assert "audit passed" in out

        # A stored balance that drifted from its postings (the only table a bug could edit).
        async with db.transaction() as session:
            await session.execute(text("UPDATE accounts SET balance = balance + 1 WHERE member_id = :m"), {"m": member})
        code, out = await cli(url)
        assert code == 1, out
        assert "BREACH trial balance is zero" in out and "BREACH stored balance = sum of postings" in out
        assert "audit FAILED" in out
        async with db.transaction() as session:
            await session.execute(text("UPDATE accounts SET balance = balance - 1 WHERE member_id = :m"), {"m": member})

        # A balanced transaction whose running balances are wrong (the triggers only check sums).
        account_ids = await _accounts(db, group)
        tx = uuid.uuid4()
        async with db.transaction() as session:
            await session.execute(
                text(
                    "INSERT INTO transactions (transaction_id, group_id, kind, idempotency_key, fingerprint, currency)"
                    " VALUES (:tx, :g, 'bad', :k, 'f', 'EUR')"
                ),
                {"tx": tx, "g": group, "k": str(tx)},
            )
            await session.execute(
                text(
                    "INSERT INTO postings (transaction_id, account_id, amount, currency, balance_after) VALUES"
                    " (:tx, :m, 5, 'EUR', 999), (:tx, :s, -5, 'EUR', 999)"
                ),
                {"tx": tx, "m": account_ids["member"], "s": account_ids["sales"]},
            )
            await session.execute(
                text("UPDATE accounts SET balance = balance + 5 WHERE account_id = :m"), {"m": account_ids["member"]}
            )
            await session.execute(
                text("UPDATE accounts SET balance = balance - 5 WHERE account_id = :s"), {"s": account_ids["sales"]}
            )
        report = await audit_database(url, group)
        assert not report.ok
        assert [b for b in report.breaches if "running balance" in b], report.breaches
        assert not [b for b in report.breaches if "trial balance" in b]
        code, out = await cli(url, "--group", str(group))
        assert code == 1 and "BREACH running balances consistent" in out
        code, out = await cli(url, "--group", str(uuid.uuid4()))
        assert code == 0 and "0 group/currency scope(s)" in out
    finally:
        await db.dispose()


async def _accounts(db: Database, group: uuid.UUID) -> dict[str, uuid.UUID]:
    async with db.sessionmaker() as session:
        rows = (
            await session.execute(text("SELECT type, account_id FROM accounts WHERE group_id = :g"), {"g": group})
        ).all()
    return {row.type: row.account_id for row in rows}
