"""Reads benchmark: the member balances of a 10,000-member group, page by page through the
ledger's HTTP API, beside a bare asyncpg keyset query of the same rows, in the same run.

    .venv/bin/python bench/reads/balances.py [--members 10000] [--page 100] [--repeat 3]

The group gets `--members` member accounts with balances spread over debts and credits and a
pending payment for one member in five, written directly (no postings: the page reads accounts,
pending entries and holds only). The tables are NOT analyzed first: plans must not depend on
statistics. Timed, in-process over ASGI:
* page: each page of `--page` members from the first to the last (following `X-Next-Cursor`),
  with the whole group's totals on every page;
* baseline: the same pages read by one bare asyncpg query each (keyset on balance, member id,
  with the pending sum for the page's accounts), no HTTP, no models;
* csv: the whole balances.csv, streamed.
Runs against the local servers in a database of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
from sqlalchemy import insert

from cagette_contracts import AccountType, Role
from cagette_ledger.app import LedgerService
from cagette_ledger.settings import LedgerSettings
from cagette_ledger.tables import accounts, groups, pending_entries
from cagette_runtime.auth import Principal, encode_token
from cagette_runtime.testing import isolated_servers

BARE_PAGE = """
SELECT a.account_id, a.member_id, a.balance, coalesce(p.pending, 0) AS pending
FROM accounts a
LEFT JOIN LATERAL (
  SELECT sum(amount) AS pending FROM pending_entries e WHERE e.account_id = a.account_id AND e.status = 'pending'
) p ON true
WHERE a.group_id = $1 AND a.type = 'member' AND (a.balance, a.member_id) > ($2, $3)
ORDER BY a.balance, a.member_id
LIMIT $4
"""


async def seed(service: LedgerService, group_id: uuid.UUID, members: int) -> None:
    rng = random.Random(7)
    rows = [
        {
            "account_id": uuid.uuid4(),
            "group_id": group_id,
            "type": AccountType.MEMBER.value,
            "member_id": uuid.uuid4(),
            "currency": "EUR",
            "balance": rng.choice([0, rng.randint(-20_000, -1), rng.randint(1, 20_000)]),
        }
        for _ in range(members)
    ]
    async with service.database.transaction() as session:
        await session.execute(
            insert(groups).values(
                group_id=group_id,
                currency="EUR",
                payments_enabled=True,
                allow_negative_money_pot=True,
                settings_occurred_at=datetime.now(UTC),
            )
        )
        await session.execute(insert(accounts), rows)
        await session.execute(
            insert(pending_entries),
            [
                {
                    "payment_id": uuid.uuid4(),
                    "group_id": group_id,
                    "member_id": row["member_id"],
                    "account_id": row["account_id"],
                    "amount": 1465,
                    "currency": "EUR",
                    "method": "cheque",
                    "status": "pending",
                }
                for row in rows[::5]
            ],
        )


async def main(members: int, page_size: int, repeat: int) -> None:
    async with isolated_servers() as servers:
        database_url = await servers.create_database("reads_bench")
        settings = LedgerSettings(service_name="ledger", database_url=database_url, amqp_url=servers.amqp_url)
        service = LedgerService(settings)
        await service.start()
        pages: list[float] = []
        bare: list[float] = []
        csvs: list[float] = []
        try:
            group_id = uuid.uuid4()
            await seed(service, group_id, members)
            token = encode_token(
                Principal(user_id=uuid.uuid4(), roles={group_id: Role.COORDINATOR}), settings.jwt_secret
            )
            headers = {"Authorization": f"Bearer {token}"}
            dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
            connection = await asyncpg.connect(dsn)
            app = service.create_app()
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://ledger", timeout=120
            ) as http:
                for _ in range(repeat):
                    cursor, seen = None, 0
                    while True:
                        params: dict[str, str | int] = {"limit": page_size} | ({"cursor": cursor} if cursor else {})
                        started = time.perf_counter()
                        answer = await http.get(f"/groups/{group_id}/balances", params=params, headers=headers)
                        pages.append(time.perf_counter() - started)
                        assert answer.status_code == 200, answer.text[:300]
                        body = answer.json()
                        assert body["totals"]["members"] == members
                        seen += sum(len(body[name]) for name in ("in_debt", "balanced", "in_credit"))
                        cursor = answer.headers.get("x-next-cursor")
                        if cursor is None:
                            break
                    assert seen == members, seen
                    after: tuple[int, uuid.UUID] = (-(2**62), uuid.UUID(int=0))
                    while True:
                        started = time.perf_counter()
                        rows = await connection.fetch(BARE_PAGE, group_id, after[0], after[1], page_size)
                        bare.append(time.perf_counter() - started)
                        if len(rows) < page_size:
                            break
                        after = (rows[-1]["balance"], rows[-1]["member_id"])
                    started = time.perf_counter()
                    exported = await http.get(f"/groups/{group_id}/balances.csv", headers=headers)
                    csvs.append(time.perf_counter() - started)
                    assert exported.status_code == 200 and exported.text.count("\n") == members + 1
            await connection.close()
        finally:
            await service.stop()

    def ms(values: list[float], q: float) -> float:
        return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000

    print(f"member balances, {members} members, pages of {page_size}, {repeat} passes (no ANALYZE):")
    for name, values in (("page (HTTP)", pages), ("baseline (bare SQL)", bare)):
        print(
            f"  {name:<20} median {statistics.median(values) * 1000:6.1f} ms  p95 {ms(values, 0.95):6.1f} ms"
            f"  max {max(values) * 1000:6.1f} ms  ({len(values)} pages)"
        )
    ratio = statistics.median(pages) / statistics.median(bare)
    print(f"  page / baseline (medians): {ratio:.1f}x")
    print(f"  balances.csv of {members} rows: median {statistics.median(csvs):.2f} s, best {min(csvs):.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.members, args.page, args.repeat))
