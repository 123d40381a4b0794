"""Opening-balance import benchmark: a 10,000-row CSV posted to the ledger's HTTP API, beside
the row-by-row posting it replaced, measured in the same run on the same servers.

    .venv/bin/python bench/ledger/opening_balances.py [--rows 10000] [--repeat 3] [--baseline-rows 1000]

Times, on a fresh group of members with accounts each run:
* refused: a `--rows` file whose last member is unknown (parsing, the one query for every member
  of the file, the compact error list) - nothing is recorded;
* check: the valid `--rows` file with `?check=true` (every step of the import, rolled back);
* import: the same file, every opening balance posted set-wise in one transaction;
* baseline: `--baseline-rows` of them posted the way the import did before (one
  `post_opening_balance` per row, each in its own savepoint), in one transaction, directly on
  the database (no HTTP).
Figures are per file and per row, so the import and the baseline compare at any sizes.

Runs in-process against the local servers (CAGETTE_AMQP_URL / CAGETTE_POSTGRES_URL or the
defaults), in a vhost and a database of its own that are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import insert

from cagette_contracts import AccountType, Money, Role
from cagette_ledger import domain, operations
from cagette_ledger.app import LedgerService
from cagette_ledger.settings import LedgerSettings
from cagette_ledger.tables import accounts, groups
from cagette_runtime.auth import Principal, encode_token
from cagette_runtime.testing import isolated_servers


async def seed(service: LedgerService, group_id: uuid.UUID, members: list[uuid.UUID]) -> None:
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
        await session.execute(
            insert(accounts),
            [
                {
                    "account_id": uuid.uuid4(),
                    "group_id": group_id,
                    "type": AccountType.MEMBER.value,
                    "member_id": member,
                    "currency": "EUR",
                }
                for member in members
            ],
        )


async def timed(http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], expect: int) -> float:
    started = time.perf_counter()
    # A new action each time: its own Idempotency-Key (required on the import, runtime/idempotency.py).
    response = await http.post(url, content=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
    elapsed = time.perf_counter() - started
    assert response.status_code == expect, response.text[:500]
    return elapsed


async def baseline(service: LedgerService, group_id: uuid.UUID, members: list[uuid.UUID]) -> float:
    """The import before it was set-wise: one posting at a time, a savepoint each."""
    drafts = [
        domain.opening_balance(
            group_id, member, Money(amount=(i % 500 - 250) * 100 + 50, currency="EUR"), recorded_by=None
        )
        for i, member in enumerate(members)
    ]
    started = time.perf_counter()
    async with service.database.transaction() as session:
        for draft in drafts:
            async with session.begin_nested():
                await operations.post_opening_balance(session, draft)
    return time.perf_counter() - started


async def main(rows: int, repeat: int, baseline_rows: int) -> None:
    async with isolated_servers() as servers:
        settings = LedgerSettings(
            service_name="ledger",
            database_url=await servers.create_database("ledger_bench"),
            amqp_url=servers.amqp_url,
            max_body_bytes=4 * 1024 * 1024,
        )
        service = LedgerService(settings)
        await service.start()
        figures: dict[str, list[float]] = {"refused": [], "check": [], "import": [], "baseline": []}
        try:
            app = service.create_app()
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://ledger", timeout=600
            ) as http:
                for _ in range(repeat):
                    group_id, members = uuid.uuid4(), [uuid.uuid4() for _ in range(rows)]
                    await seed(service, group_id, members)
                    token = encode_token(
                        Principal(user_id=uuid.uuid4(), roles={group_id: Role.COORDINATOR}), settings.jwt_secret
                    )
                    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
                    url = f"/groups/{group_id}/opening-balances"
                    lines = [f"{member},{(i % 500) - 250}.50" for i, member in enumerate(members)]
                    refused = "member_id,amount\n" + "\n".join([*lines[:-1], f"{uuid.uuid4()},1.00"]) + "\n"
                    figures["refused"].append(await timed(http, url, refused.encode(), headers, 422))
                    valid = ("member_id,amount\n" + "\n".join(lines) + "\n").encode()
                    figures["check"].append(await timed(http, f"{url}?check=true", valid, headers, 200))
                    figures["import"].append(await timed(http, url, valid, headers, 200))
                    other_group, others = uuid.uuid4(), [uuid.uuid4() for _ in range(baseline_rows)]
                    await seed(service, other_group, others)
                    figures["baseline"].append(await baseline(service, other_group, others))
        finally:
            await service.stop()
    print(f"opening balances, {repeat} runs (median / best; per row at the median):")
    for name, size in (("refused", rows), ("check", rows), ("import", rows), ("baseline", baseline_rows)):
        median, best = statistics.median(figures[name]), min(figures[name])
        print(f"  {name:<9} {size:>6} rows: {median:7.2f} s / {best:7.2f} s   {median / size * 1000:6.2f} ms/row")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-rows", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.repeat, args.baseline_rows))
